//! CPU backend: the exported ONNX graphs through `tract`.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{ModelMeta, Policy, PolicyError};

type Plan = Arc<TypedRunnableModel>;

pub struct TractPolicy {
    meta: ModelMeta,
    backbone: Plan,
    /// Backbone graph inputs in graph order: which of our tensors feeds each.
    backbone_feeds: Vec<BackboneInput>,
    input_ids: Tensor,
    attention_mask: Tensor,
    /// One optimised head plan per window length k = 1..=window (index k−1).
    heads: Vec<Plan>,
}

#[derive(Debug, Clone, Copy)]
enum BackboneInput {
    Pixels,
    InputIds,
    AttentionMask,
}

fn load_err(
    path: &std::path::Path,
    what: &'static str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> PolicyError {
    PolicyError::Load {
        path: path.display().to_string(),
        what,
        source: e.into(),
    }
}

/// The graph's first output must hold exactly `expected` values (its
/// concrete shape once the input facts are set; batch 1).
fn check_output(
    model: &TypedModel,
    path: &std::path::Path,
    what: &'static str,
    key: &str,
    expected: usize,
) -> Result<(), PolicyError> {
    let fact = model.output_fact(0).map_err(|e| load_err(path, what, e))?;
    let Some(shape) = fact.shape.as_concrete() else {
        return Err(load_err(
            path,
            what,
            format!("shape {:?} is not concrete", fact.shape),
        ));
    };
    // One frame per call (batch 1): the output buffer holds exactly this many values.
    let per_frame: usize = shape.iter().product();
    if per_frame != expected {
        return Err(load_err(
            path,
            what,
            format!("the graph gives {per_frame} values per frame (shape {shape:?}) but model.json says {key} = {expected}"),
        ));
    }
    Ok(())
}

fn backend_err(
    stage: &'static str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> PolicyError {
    PolicyError::Backend {
        stage,
        source: e.into(),
    }
}

impl TractPolicy {
    /// Load `DIR/model.json`, check the graph hashes, and build the plans.
    pub fn load(dir: &std::path::Path) -> Result<Self, PolicyError> {
        let meta = ModelMeta::load(dir)?;
        meta.verify_files()?;
        Self::from_meta(meta)
    }

    pub fn from_meta(meta: ModelMeta) -> Result<Self, PolicyError> {
        let raw = &meta.raw;
        let onnx = tract_onnx::onnx();

        let path = &meta.backbone_path;
        let model = onnx
            .model_for_path(path)
            .map_err(|e| load_err(path, "backbone graph", e))?;
        let mut backbone_feeds = Vec::new();
        for outlet in model
            .input_outlets()
            .map_err(|e| load_err(path, "backbone inputs", e))?
        {
            let name = &model.node(outlet.node).name;
            backbone_feeds.push(match name.as_str() {
                "pixel_values" => BackboneInput::Pixels,
                "input_ids" => BackboneInput::InputIds,
                "attention_mask" => BackboneInput::AttentionMask,
                other => {
                    return Err(load_err(
                        path,
                        "backbone inputs",
                        format!("unknown input {other:?} (expected pixel_values, input_ids, attention_mask)"),
                    ))
                }
            });
        }
        let (w, h) = (raw.image.width, raw.image.height);
        let mut model = model;
        for (i, feed) in backbone_feeds.iter().enumerate() {
            let fact = match feed {
                BackboneInput::Pixels => f32::fact([1, 3, h, w]).into(),
                BackboneInput::InputIds => i64::fact([1, raw.prompt.input_ids.len()]).into(),
                BackboneInput::AttentionMask => {
                    i64::fact([1, raw.prompt.attention_mask.len()]).into()
                }
            };
            model = model
                .with_input_fact(i, fact)
                .map_err(|e| load_err(path, "backbone input shapes", e))?;
        }
        let backbone = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(path, "backbone graph", e))?;
        // model.json must describe the graphs it ships with: a feature width
        // or chunk that disagrees would fault every inference at run time.
        check_output(
            backbone.model(),
            path,
            "backbone output",
            "backbone.feature_dim",
            meta.feature_dim(),
        )?;

        let path = &meta.head_path;
        let head_model = onnx
            .model_for_path(path)
            .map_err(|e| load_err(path, "head graph", e))?;
        let dim = meta.feature_dim();
        let mut heads = Vec::with_capacity(raw.window);
        for k in 1..=raw.window {
            let plan = head_model
                .clone()
                .with_input_fact(0, f32::fact([1, k, dim]).into())
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
                .map_err(|e| load_err(path, "head graph", format!("window length {k}: {e:#}")))?;
            check_output(
                plan.model(),
                path,
                "head output",
                "chunk × action_dim",
                raw.chunk * raw.action_dim,
            )?;
            heads.push(plan);
        }

        let input_ids = Tensor::from_shape(&[1, raw.prompt.input_ids.len()], &raw.prompt.input_ids)
            .map_err(|e| backend_err("prompt tensor", e))?;
        let attention_mask = Tensor::from_shape(
            &[1, raw.prompt.attention_mask.len()],
            &raw.prompt.attention_mask,
        )
        .map_err(|e| backend_err("prompt tensor", e))?;
        Ok(Self {
            meta,
            backbone,
            backbone_feeds,
            input_ids,
            attention_mask,
            heads,
        })
    }
}

fn copy_single_output(
    outputs: TVec<TValue>,
    out: &mut [f32],
    what: &'static str,
) -> Result<(), PolicyError> {
    let view = outputs[0]
        .to_plain_array_view::<f32>()
        .map_err(|e| backend_err(what, e))?;
    if view.len() != out.len() {
        return Err(PolicyError::Shape {
            what,
            expected: out.len(),
            actual: view.len(),
        });
    }
    for (o, v) in out.iter_mut().zip(view.iter()) {
        *o = *v;
    }
    Ok(())
}

impl Policy for TractPolicy {
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn encode(&mut self, pixels: &[f32], feature: &mut [f32]) -> Result<(), PolicyError> {
        super::check_pixels(&self.meta, pixels)?;
        let raw = &self.meta.raw;
        let image = Tensor::from_shape(&[1, 3, raw.image.height, raw.image.width], pixels)
            .map_err(|e| backend_err("backbone input", e))?;
        let mut image = Some(image);
        let inputs: TVec<TValue> = self
            .backbone_feeds
            .iter()
            .map(|feed| match feed {
                BackboneInput::Pixels => image.take().expect("one pixel input").into(),
                BackboneInput::InputIds => self.input_ids.clone().into(),
                BackboneInput::AttentionMask => self.attention_mask.clone().into(),
            })
            .collect();
        let outputs = self
            .backbone
            .run(inputs)
            .map_err(|e| backend_err("backbone", e))?;
        copy_single_output(outputs, feature, "backbone output")
    }

    fn decode(
        &mut self,
        features: &[f32],
        steps: usize,
        chunk: &mut [f32],
    ) -> Result<(), PolicyError> {
        // One plan per window length 1..=window was built in `from_meta`.
        super::check_head_input(&self.meta, features, steps)?;
        let dim = self.meta.feature_dim();
        let input = Tensor::from_shape(&[1, steps, dim], features)
            .map_err(|e| backend_err("head input", e))?;
        let outputs = self.heads[steps - 1]
            .run(tvec!(input.into()))
            .map_err(|e| backend_err("head", e))?;
        copy_single_output(outputs, chunk, "head output")
    }
}
