// mvla's owned binding to TensorRT: a small extern "C" surface over the
// TensorRT C++ API, compiled by build.rs only with the `tensorrt` feature.
//
// Nothing here links against libnvinfer: the three factory entry points
// (createInferRuntime_INTERNAL, createInferBuilder_INTERNAL,
// createNvOnnxParser_INTERNAL) and getInferLibVersion are resolved with
// dlopen/dlsym at run time. Every other call in the TensorRT headers is an
// inline method that forwards through a virtual table of the object those
// factories return, so the binary builds and starts on a machine without
// TensorRT and `mvla_trt_open` reports what is missing.
//
// Conventions: functions return 0 on success and a negative code on failure,
// with a message in the caller's `err` buffer (TensorRT's own error-level log
// lines are appended to it). No C++ exception crosses this boundary.

#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

using namespace nvinfer1;

extern "C" {

typedef void (*mvla_trt_log_fn)(void* user, int32_t severity, const char* msg);
typedef void (*mvla_trt_sink_fn)(void* user, const void* data, size_t len);
// kind: 0 phase start (value = number of steps), 1 step complete (value =
// step), 2 phase finish. Return 0 to cancel the build, anything else to go on.
typedef int32_t (*mvla_trt_progress_fn)(void* user, int32_t kind, const char* phase, const char* parent,
                                        int32_t value);

#define MVLA_TRT_MAX_DIMS 8

typedef struct {
    int32_t nb;
    int64_t d[MVLA_TRT_MAX_DIMS];
} MvlaTrtDims;

typedef struct {
    const char* name;
    MvlaTrtDims min;
    MvlaTrtDims opt;
    MvlaTrtDims max;
} MvlaTrtProfile;

typedef struct {
    const char* onnx_path;
    int32_t fp16;
    uint64_t workspace_bytes;
    const MvlaTrtProfile* profiles;
    int32_t nb_profiles;
    // Network inputs to declare as fp16 (zero copy from an fp16 preprocessing kernel).
    const char* const* half_inputs;
    int32_t nb_half_inputs;
    const void* timing_cache;
    size_t timing_cache_len;
    // -1: TensorRT's default.
    int32_t optimization_level;
} MvlaTrtBuildOptions;

typedef struct {
    const char* name;
    int32_t is_input;
    int32_t dtype;  // nvinfer1::DataType
    MvlaTrtDims dims;  // -1 for a dynamic dimension
} MvlaTrtTensorInfo;

}  // extern "C"

namespace {

typedef void* (*FactoryFn)(void*, int32_t);
typedef void* (*ParserFactoryFn)(void*, void*, int);
typedef int32_t (*VersionFn)();

struct Library {
    std::mutex mutex;
    void* nvinfer = nullptr;
    void* parser = nullptr;
    FactoryFn create_runtime = nullptr;
    FactoryFn create_builder = nullptr;
    VersionFn lib_version = nullptr;
    ParserFactoryFn create_parser = nullptr;
};

Library& library() {
    static Library lib;
    return lib;
}

void write_err(char* err, size_t len, const std::string& msg) {
    if (err == nullptr || len == 0) return;
    size_t n = msg.size() < len - 1 ? msg.size() : len - 1;
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
}

// Forwards TensorRT's log to Rust (tracing) and keeps this thread's error
// lines so a failing call can report why.
class ShimLogger : public ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kERROR) {
            try {
                if (!errors().empty()) errors() += "; ";
                errors() += msg;
            } catch (...) {
            }
        }
        mvla_trt_log_fn fn = callback;
        if (fn != nullptr) fn(user, static_cast<int32_t>(severity), msg);
    }
    static std::string& errors() {
        thread_local std::string text;
        return text;
    }
    mvla_trt_log_fn callback = nullptr;
    void* user = nullptr;
};

ShimLogger& logger() {
    static ShimLogger l;
    return l;
}

std::string with_trt_errors(const std::string& what) {
    const std::string& e = ShimLogger::errors();
    return e.empty() ? what : what + " (TensorRT: " + e + ")";
}

Dims to_dims(const MvlaTrtDims& in) {
    Dims d{};
    d.nbDims = in.nb;
    for (int32_t i = 0; i < in.nb && i < Dims::MAX_DIMS; ++i) d.d[i] = in.d[i];
    return d;
}

void from_dims(const Dims& in, MvlaTrtDims* out) {
    out->nb = in.nbDims;
    for (int32_t i = 0; i < in.nbDims && i < MVLA_TRT_MAX_DIMS; ++i) out->d[i] = in.d[i];
}

void* open_first(const char* const* names, int32_t count, std::string* tried) {
    for (int32_t i = 0; i < count; ++i) {
        // RTLD_LOCAL: TensorRT's symbols stay out of the global namespace.
        void* h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h != nullptr) return h;
        const char* e = dlerror();
        if (!tried->empty()) *tried += "; ";
        *tried += e != nullptr ? e : names[i];
    }
    return nullptr;
}

// Reports the builder's phases to Rust; cancelling returns false to TensorRT.
class ShimProgress : public IProgressMonitor {
public:
    ShimProgress(mvla_trt_progress_fn fn, void* user) : fn_(fn), user_(user) {}
    void phaseStart(const char* phase, const char* parent, int32_t steps) noexcept override {
        if (fn_ != nullptr) fn_(user_, 0, phase, parent, steps);
    }
    bool stepComplete(const char* phase, int32_t step) noexcept override {
        return fn_ == nullptr || fn_(user_, 1, phase, nullptr, step) != 0;
    }
    void phaseFinish(const char* phase) noexcept override {
        if (fn_ != nullptr) fn_(user_, 2, phase, nullptr, 0);
    }

private:
    mvla_trt_progress_fn fn_;
    void* user_;
};

template <typename T>
struct Deleter {
    void operator()(T* p) const noexcept { delete p; }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

}  // namespace

struct MvlaTrtEngine {
    IRuntime* runtime = nullptr;
    ICudaEngine* engine = nullptr;
    IExecutionContext* context = nullptr;
};

extern "C" {

// The TensorRT version these headers describe (major*10000 + minor*100 + patch
// for TensorRT >= 10).
int32_t mvla_trt_header_version() { return NV_TENSORRT_VERSION; }

void mvla_trt_set_log_callback(mvla_trt_log_fn fn, void* user) {
    logger().user = user;
    logger().callback = fn;
}

// Load libnvinfer (first loadable name wins) and resolve the runtime and
// builder factories. Idempotent.
int32_t mvla_trt_open(const char* const* names, int32_t count, char* err, size_t err_len) {
    Library& lib = library();
    std::lock_guard<std::mutex> lock(lib.mutex);
    if (lib.nvinfer != nullptr) return 0;
    std::string tried;
    void* h = open_first(names, count, &tried);
    if (h == nullptr) {
        write_err(err, err_len, "TensorRT (libnvinfer) not found: " + tried);
        return -1;
    }
    FactoryFn rt = reinterpret_cast<FactoryFn>(dlsym(h, "createInferRuntime_INTERNAL"));
    FactoryFn b = reinterpret_cast<FactoryFn>(dlsym(h, "createInferBuilder_INTERNAL"));
    VersionFn v = reinterpret_cast<VersionFn>(dlsym(h, "getInferLibVersion"));
    if (rt == nullptr || b == nullptr || v == nullptr) {
        write_err(err, err_len,
                  "libnvinfer lacks createInferRuntime_INTERNAL/createInferBuilder_INTERNAL/getInferLibVersion");
        dlclose(h);
        return -2;
    }
    lib.nvinfer = h;
    lib.create_runtime = rt;
    lib.create_builder = b;
    lib.lib_version = v;
    return 0;
}

// Load libnvonnxparser (only the engine build needs it). Idempotent.
int32_t mvla_trt_open_parser(const char* const* names, int32_t count, char* err, size_t err_len) {
    Library& lib = library();
    std::lock_guard<std::mutex> lock(lib.mutex);
    if (lib.parser != nullptr) return 0;
    std::string tried;
    void* h = open_first(names, count, &tried);
    if (h == nullptr) {
        write_err(err, err_len, "TensorRT ONNX parser (libnvonnxparser) not found: " + tried);
        return -1;
    }
    ParserFactoryFn p = reinterpret_cast<ParserFactoryFn>(dlsym(h, "createNvOnnxParser_INTERNAL"));
    if (p == nullptr) {
        write_err(err, err_len, "libnvonnxparser lacks createNvOnnxParser_INTERNAL");
        dlclose(h);
        return -2;
    }
    lib.parser = h;
    lib.create_parser = p;
    return 0;
}

// Version of the loaded library, or -1 before mvla_trt_open succeeded.
int32_t mvla_trt_lib_version() {
    Library& lib = library();
    std::lock_guard<std::mutex> lock(lib.mutex);
    return lib.lib_version != nullptr ? lib.lib_version() : -1;
}

// ---------------------------------------------------------------- runtime

MvlaTrtEngine* mvla_trt_engine_load(const void* blob, size_t len, char* err, size_t err_len) {
    ShimLogger::errors().clear();
    Library& lib = library();
    if (lib.create_runtime == nullptr) {
        write_err(err, err_len, "TensorRT is not loaded (mvla_trt_open first)");
        return nullptr;
    }
    try {
        std::unique_ptr<MvlaTrtEngine> e(new MvlaTrtEngine());
        e->runtime = static_cast<IRuntime*>(lib.create_runtime(&logger(), NV_TENSORRT_VERSION));
        if (e->runtime == nullptr) {
            write_err(err, err_len,
                      with_trt_errors("createInferRuntime failed (library and header versions differ?)"));
            return nullptr;
        }
        e->engine = e->runtime->deserializeCudaEngine(blob, len);
        if (e->engine == nullptr) {
            write_err(err, err_len,
                      with_trt_errors("deserializing the engine failed (built by another TensorRT or for another GPU?)"));
            delete e->runtime;
            return nullptr;
        }
        e->context = e->engine->createExecutionContext();
        if (e->context == nullptr) {
            write_err(err, err_len, with_trt_errors("creating the execution context failed (GPU memory?)"));
            delete e->engine;
            delete e->runtime;
            return nullptr;
        }
        return e.release();
    } catch (const std::exception& x) {
        write_err(err, err_len, std::string("engine load: ") + x.what());
        return nullptr;
    }
}

void mvla_trt_engine_free(MvlaTrtEngine* e) {
    if (e == nullptr) return;
    // Reverse order of creation: context, engine, then the runtime.
    delete e->context;
    delete e->engine;
    delete e->runtime;
    delete e;
}

int32_t mvla_trt_engine_nb_io(const MvlaTrtEngine* e) { return e->engine->getNbIOTensors(); }

int32_t mvla_trt_engine_io(const MvlaTrtEngine* e, int32_t index, MvlaTrtTensorInfo* out) {
    const char* name = e->engine->getIOTensorName(index);
    if (name == nullptr) return -1;
    out->name = name;
    out->is_input = e->engine->getTensorIOMode(name) == TensorIOMode::kINPUT ? 1 : 0;
    out->dtype = static_cast<int32_t>(e->engine->getTensorDataType(name));
    from_dims(e->engine->getTensorShape(name), &out->dims);
    return 0;
}

// selector: 0 min, 1 opt, 2 max (profile 0).
int32_t mvla_trt_engine_profile_shape(const MvlaTrtEngine* e, const char* name, int32_t selector,
                                      MvlaTrtDims* out) {
    OptProfileSelector s = selector == 0   ? OptProfileSelector::kMIN
                           : selector == 1 ? OptProfileSelector::kOPT
                                           : OptProfileSelector::kMAX;
    Dims d = e->engine->getProfileShape(name, 0, s);
    if (d.nbDims < 0) return -1;
    from_dims(d, out);
    return 0;
}

int32_t mvla_trt_set_input_shape(MvlaTrtEngine* e, const char* name, const MvlaTrtDims* dims, char* err,
                                 size_t err_len) {
    ShimLogger::errors().clear();
    if (!e->context->setInputShape(name, to_dims(*dims))) {
        write_err(err, err_len, with_trt_errors(std::string("setInputShape(") + name + ") rejected"));
        return -1;
    }
    return 0;
}

int32_t mvla_trt_tensor_shape(const MvlaTrtEngine* e, const char* name, MvlaTrtDims* out) {
    Dims d = e->context->getTensorShape(name);
    if (d.nbDims < 0) return -1;
    from_dims(d, out);
    return 0;
}

int32_t mvla_trt_set_address(MvlaTrtEngine* e, const char* name, void* device_ptr, char* err, size_t err_len) {
    ShimLogger::errors().clear();
    if (!e->context->setTensorAddress(name, device_ptr)) {
        write_err(err, err_len, with_trt_errors(std::string("setTensorAddress(") + name + ") rejected"));
        return -1;
    }
    return 0;
}

// Enqueue on `stream` (a CUstream / cudaStream_t); returns without waiting.
int32_t mvla_trt_enqueue(MvlaTrtEngine* e, void* stream, char* err, size_t err_len) {
    ShimLogger::errors().clear();
    if (!e->context->enqueueV3(static_cast<cudaStream_t>(stream))) {
        write_err(err, err_len, with_trt_errors("enqueueV3 failed"));
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- builder

int32_t mvla_trt_build(const MvlaTrtBuildOptions* o, mvla_trt_progress_fn progress, void* progress_user,
                       mvla_trt_sink_fn engine_sink, mvla_trt_sink_fn cache_sink, void* sink_user, char* err,
                       size_t err_len) {
    ShimLogger::errors().clear();
    Library& lib = library();
    if (lib.create_builder == nullptr || lib.create_parser == nullptr) {
        write_err(err, err_len, "TensorRT builder/ONNX parser not loaded");
        return -1;
    }
    try {
        Owned<IBuilder> builder(static_cast<IBuilder*>(lib.create_builder(&logger(), NV_TENSORRT_VERSION)));
        if (!builder) {
            write_err(err, err_len, with_trt_errors("createInferBuilder failed"));
            return -2;
        }
        Owned<INetworkDefinition> network(builder->createNetworkV2(0));
        Owned<nvonnxparser::IParser> parser(
            static_cast<nvonnxparser::IParser*>(lib.create_parser(network.get(), &logger(), NV_ONNX_PARSER_VERSION)));
        if (!network || !parser) {
            write_err(err, err_len, with_trt_errors("creating the network or the ONNX parser failed"));
            return -3;
        }
        // parseFromFile resolves external weight files next to the .onnx.
        if (!parser->parseFromFile(o->onnx_path, static_cast<int>(ILogger::Severity::kWARNING))) {
            std::string msg = std::string("parsing ") + o->onnx_path + " failed";
            for (int i = 0; i < parser->getNbErrors(); ++i) {
                msg += i == 0 ? ": " : "; ";
                msg += parser->getError(i)->desc();
            }
            write_err(err, err_len, with_trt_errors(msg));
            return -4;
        }
        Owned<IBuilderConfig> config(builder->createBuilderConfig());
        config->setMemoryPoolLimit(MemoryPoolType::kWORKSPACE, static_cast<size_t>(o->workspace_bytes));
        if (o->optimization_level >= 0) config->setBuilderOptimizationLevel(o->optimization_level);
#if NV_TENSORRT_MAJOR < 11
        // TensorRT 10 (JetPack 6): weakly typed network, FP16 kernels allowed by flag.
        if (o->fp16) config->setFlag(BuilderFlag::kFP16);
        for (int32_t i = 0; i < o->nb_half_inputs; ++i) {
            bool found = false;
            for (int32_t j = 0; j < network->getNbInputs(); ++j) {
                ITensor* t = network->getInput(j);
                if (std::strcmp(t->getName(), o->half_inputs[i]) == 0) {
                    t->setType(DataType::kHALF);
                    found = true;
                }
            }
            if (!found) {
                write_err(err, err_len, std::string("no network input named ") + o->half_inputs[i]);
                return -5;
            }
        }
#else
        // TensorRT >= 11 builds strongly typed networks only: precision comes
        // from the ONNX graph's types, and the FP16 builder flag is gone.
        if (o->fp16 || o->nb_half_inputs > 0) {
            write_err(err, err_len,
                      "this TensorRT (>= 11) has no FP16 builder flag: build with --precision fp32, "
                      "or export an fp16 ONNX graph");
            return -5;
        }
#endif
        IOptimizationProfile* profile = nullptr;
        if (o->nb_profiles > 0) {
            profile = builder->createOptimizationProfile();
            for (int32_t i = 0; i < o->nb_profiles; ++i) {
                const MvlaTrtProfile& p = o->profiles[i];
                if (!profile->setDimensions(p.name, OptProfileSelector::kMIN, to_dims(p.min)) ||
                    !profile->setDimensions(p.name, OptProfileSelector::kOPT, to_dims(p.opt)) ||
                    !profile->setDimensions(p.name, OptProfileSelector::kMAX, to_dims(p.max))) {
                    write_err(err, err_len,
                              with_trt_errors(std::string("optimisation profile for ") + p.name + " rejected"));
                    return -6;
                }
            }
            if (config->addOptimizationProfile(profile) < 0) {
                write_err(err, err_len, with_trt_errors("addOptimizationProfile failed"));
                return -6;
            }
        }
        Owned<ITimingCache> cache(config->createTimingCache(o->timing_cache, o->timing_cache_len));
        if (cache) {
            // ignoreMismatch = false: a cache from another GPU/TensorRT is refused, not trusted.
            if (!config->setTimingCache(*cache, false)) {
                ShimLogger::errors().clear();
                Owned<ITimingCache> fresh(config->createTimingCache(nullptr, 0));
                if (fresh) config->setTimingCache(*fresh, false);
            }
        }
        ShimProgress monitor(progress, progress_user);
        config->setProgressMonitor(&monitor);

        Owned<IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
        config->setProgressMonitor(nullptr);
        if (!plan || plan->size() == 0) {
            write_err(err, err_len, with_trt_errors("buildSerializedNetwork failed"));
            return -7;
        }
        engine_sink(sink_user, plan->data(), plan->size());
        const ITimingCache* used = config->getTimingCache();
        if (used != nullptr && cache_sink != nullptr) {
            Owned<IHostMemory> blob(used->serialize());
            if (blob) cache_sink(sink_user, blob->data(), blob->size());
        }
        return 0;
    } catch (const std::exception& x) {
        write_err(err, err_len, std::string("engine build: ") + x.what());
        return -8;
    }
}

}  // extern "C"
