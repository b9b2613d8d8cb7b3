#!/usr/bin/env bash
# Install mvla as a systemd service on the robot (run as root from the repo root):
#   cargo build --release --features tensorrt && sudo bash systemd/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
[ -x target/release/mvla ] || { echo "install.sh: build first: cargo build --release --features tensorrt" >&2; exit 1; }

# Dedicated unprivileged user, allowed to use the serial adapter and the camera.
if ! id mvla >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin --groups dialout,video mvla
fi
install -m 0755 target/release/mvla /usr/local/bin/mvla
install -d -m 0755 /etc/mvla /opt/mvla/models
[ -e /etc/mvla/robot.toml ] || install -m 0644 systemd/robot.toml /etc/mvla/robot.toml
[ -e /etc/mvla/serbot.toml ] || install -m 0644 calib/serbot.toml /etc/mvla/serbot.toml
install -m 0644 systemd/99-mvla.rules /etc/udev/rules.d/99-mvla.rules
install -m 0644 systemd/mvla.service /etc/systemd/system/mvla.service
udevadm control --reload-rules && udevadm trigger || true
systemctl daemon-reload
systemctl enable mvla.service
install -d -m 0755 -o mvla -g mvla /var/lib/mvla /var/lib/mvla/engines
echo "installed; put a model in /opt/mvla/models/current, build its engines"
echo "  sudo -u mvla mvla engine build --model /opt/mvla/models/current --engine-dir /var/lib/mvla/engines"
echo "check /etc/mvla/robot.toml, then: systemctl start mvla"
