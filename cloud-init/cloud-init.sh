#!/usr/bin/env bash
# Node pool initialization script for OKE: installs oke-credential-provider, then runs OKE's own
# bootstrap (oke-init.sh) with the two kubelet flags that enable it.
#
# Paste the whole file as the node pool's "Initialization script" (cloud-init). It:
#   1. picks the binary for this CPU (x86_64 -> amd64, aarch64 -> arm64);
#   2. downloads the pinned release's binary and kubelet config from OKE_CP_BASE_URL (with curl,
#      else wget), or takes them from OKE_CP_LOCAL_DIR on nodes without internet;
#   3. checks both files against the SHA256 checksums the release build wrote into this script
#      (a copy straight from the repository has none and checks against the release's
#      SHA256SUMS instead), and installs nothing if either differs;
#   4. installs /usr/local/bin/oke-credential-provider (0755) and
#      /etc/kubernetes/credential-provider-config.yaml (0644), each by an atomic rename;
#   5. starts `oke-credential-provider warm` in the background (at most OKE_CP_WARM_TIMEOUT
#      seconds, output in /var/log/oke-credential-provider-warm.log), so that kubelet's first
#      pull finds a token cached; it never fails or holds up the bootstrap;
#   6. fetches OKE's bootstrap script from the instance metadata service and runs it with
#      --kubelet-extra-args "<both flags>".
# Running it again gives the same result.
#
# Settings (environment variables, or edit the defaults below):
#   OKE_CP_VERSION      release tag to install (pinned; a release's own copy names its tag)
#   OKE_CP_REPO         GitHub owner/name the release lives in (OWNER is a placeholder that the
#                       release build replaces; a copy straight from the repository has it)
#   OKE_CP_BASE_URL     where the release files are: a mirror or an Object Storage
#                       pre-authenticated request URL ending in /o/ works too
#   OKE_CP_LOCAL_DIR    directory that already holds the release files: nothing is downloaded
#   OKE_CP_RUN_OKE_INIT "false" to only install (for autoscalers that bootstrap kubelet
#                       themselves; they must then pass the two kubelet flags)
#   OKE_CP_EXTRA_KUBELET_ARGS  more kubelet flags to pass along in the same argument
#   OKE_CP_WARM         "false" not to warm the token cache at boot
#   OKE_CP_WARM_TIMEOUT seconds the background warm-up may take (default 60)
#   OKE_CP_WORKLOAD_IDENTITY   "oke" or "federation": install the per-workload config
#                       (credential-provider-config-workload.yaml; kubelet >= 1.34 ONLY, an older
#                       kubelet rejects it) in place of the default one, with:
#     OKE_CP_PROXYMUX_URL       oke: https://<API server private endpoint>:12250/resourcePrincipalSessionTokens
#     OKE_CP_CLUSTER_CA         oke: the cluster CA file (default /etc/kubernetes/ca.crt)
#     OKE_CP_IDENTITY_DOMAIN_URL  federation: https://idcs-<id>.identity.oraclecloud.com
#     OKE_CP_FEDERATION_TOKEN_TYPE  federation: upst (default) or rpst
#     OKE_CP_NODE_IDENTITY      allow (default) or deny: service accounts that did not opt in
#     OKE_CP_TOKEN_AUDIENCE     tokenAttributes.serviceAccountTokenAudience (default: the file's)
#   OKE_CP_ROOT, OKE_CP_IMDS_URL, OKE_CP_OKE_INIT  where to install, the metadata service, where
#                       to write oke-init.sh (for tests; the defaults are right on a node)
set -euo pipefail

OKE_CP_VERSION="${OKE_CP_VERSION:-v0.1.0}"
OKE_CP_REPO="${OKE_CP_REPO:-OWNER/oke-credential-provider}"
OKE_CP_BASE_URL="${OKE_CP_BASE_URL:-https://github.com/${OKE_CP_REPO}/releases/download/${OKE_CP_VERSION}}"
OKE_CP_LOCAL_DIR="${OKE_CP_LOCAL_DIR:-}"
OKE_CP_RUN_OKE_INIT="${OKE_CP_RUN_OKE_INIT:-true}"
OKE_CP_EXTRA_KUBELET_ARGS="${OKE_CP_EXTRA_KUBELET_ARGS:-}"
OKE_CP_WORKLOAD_IDENTITY="${OKE_CP_WORKLOAD_IDENTITY:-}"
OKE_CP_PROXYMUX_URL="${OKE_CP_PROXYMUX_URL:-}"
OKE_CP_CLUSTER_CA="${OKE_CP_CLUSTER_CA:-/etc/kubernetes/ca.crt}"
OKE_CP_IDENTITY_DOMAIN_URL="${OKE_CP_IDENTITY_DOMAIN_URL:-}"
OKE_CP_FEDERATION_TOKEN_TYPE="${OKE_CP_FEDERATION_TOKEN_TYPE:-upst}"
OKE_CP_NODE_IDENTITY="${OKE_CP_NODE_IDENTITY:-allow}"
OKE_CP_TOKEN_AUDIENCE="${OKE_CP_TOKEN_AUDIENCE:-}"
OKE_CP_ROOT="${OKE_CP_ROOT:-}"
OKE_CP_IMDS_URL="${OKE_CP_IMDS_URL:-http://169.254.169.254/opc/v2}"
OKE_CP_OKE_INIT="${OKE_CP_OKE_INIT:-${OKE_CP_ROOT}/var/run/oke-init.sh}"
OKE_CP_WARM="${OKE_CP_WARM:-true}"
OKE_CP_WARM_TIMEOUT="${OKE_CP_WARM_TIMEOUT:-60}"

# The release's checksums, fixed when the release was built (scripts/build.ts writes them, in
# sha256sum's format, with the tag they belong to): files fetched from a mirror or a compromised
# download location cannot come with matching checksums of their own.
RELEASE_TAG=""
RELEASE_SHA256SUMS=""

# What kubelet sees. These are paths on the node, whatever OKE_CP_ROOT is; kubelet runs
# <bin dir>/<provider name>, so the binary's name must equal the provider name in the config.
readonly BIN_DIR=/usr/local/bin
readonly BIN_NAME=oke-credential-provider
readonly CONFIG_PATH=/etc/kubernetes/credential-provider-config.yaml
readonly CONFIG_ASSET=credential-provider-config.yaml
readonly WORKLOAD_CONFIG_ASSET=credential-provider-config-workload.yaml
readonly KUBELET_FLAGS="--image-credential-provider-config=${CONFIG_PATH} --image-credential-provider-bin-dir=${BIN_DIR}"

log() { echo "oke-credential-provider cloud-init: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for tool in sha256sum base64 install mktemp awk; do
  command -v "$tool" >/dev/null || die "required command '$tool' not found"
done
if command -v curl >/dev/null; then
  downloader=curl
elif command -v wget >/dev/null; then
  downloader=wget
else
  die "neither curl nor wget is installed: install one of them"
fi

# Per-workload identity: every setting checked before anything is downloaded or installed.
config_asset="$CONFIG_ASSET"
if [[ -n "$OKE_CP_WORKLOAD_IDENTITY" ]]; then
  config_asset="$WORKLOAD_CONFIG_ASSET"
  plain='[^"\\[:space:]]+' # a value written between double quotes in YAML as it is
  case "$OKE_CP_WORKLOAD_IDENTITY" in
  oke)
    [[ "$OKE_CP_PROXYMUX_URL" =~ ^https://${plain}$ ]] ||
      die "OKE_CP_WORKLOAD_IDENTITY=oke needs OKE_CP_PROXYMUX_URL=https://<API server private endpoint>:12250/resourcePrincipalSessionTokens"
    [[ "$OKE_CP_CLUSTER_CA" =~ ^/${plain}$ ]] || die "OKE_CP_CLUSTER_CA must be an absolute path"
    ;;
  federation)
    [[ "$OKE_CP_IDENTITY_DOMAIN_URL" =~ ^https://${plain}$ ]] ||
      die "OKE_CP_WORKLOAD_IDENTITY=federation needs OKE_CP_IDENTITY_DOMAIN_URL=https://idcs-<id>.identity.oraclecloud.com"
    [[ "$OKE_CP_FEDERATION_TOKEN_TYPE" =~ ^(upst|rpst)$ ]] || die "OKE_CP_FEDERATION_TOKEN_TYPE must be upst or rpst"
    ;;
  *) die "OKE_CP_WORKLOAD_IDENTITY must be oke or federation, not '$OKE_CP_WORKLOAD_IDENTITY'" ;;
  esac
  [[ "$OKE_CP_NODE_IDENTITY" =~ ^(allow|deny)$ ]] || die "OKE_CP_NODE_IDENTITY must be allow or deny"
  [[ -z "$OKE_CP_TOKEN_AUDIENCE" || "$OKE_CP_TOKEN_AUDIENCE" =~ ^${plain}$ ]] ||
    die "OKE_CP_TOKEN_AUDIENCE must not hold spaces, quotes or backslashes"
fi

machine="$(uname -m)"
case "$machine" in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) die "unsupported CPU architecture '$machine': release binaries exist for x86_64 (amd64) and aarch64 (arm64)" ;;
esac
bin_asset="${BIN_NAME}-linux-${arch}"

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT

fetch() { # fetch URL FILE [HEADER]: fail on HTTP errors, retry transient ones
  local header=()
  if [[ "$downloader" == curl ]]; then
    [[ -z "${3:-}" ]] || header=(--header "$3")
    curl --fail --silent --show-error --location --retry 5 --retry-delay 2 --retry-connrefused \
      --connect-timeout 10 --max-time 300 "${header[@]}" --output "$2" "$1"
  else
    [[ -z "${3:-}" ]] || header=(--header="$3")
    wget --quiet --tries=5 --waitretry=2 --retry-connrefused --timeout=10 "${header[@]}" \
      --output-document="$2" "$1"
  fi
}

if [[ -n "$RELEASE_SHA256SUMS" && "$OKE_CP_VERSION" == "$RELEASE_TAG" ]]; then
  sums_from=script
else
  sums_from=download
  [[ -z "$RELEASE_SHA256SUMS" ]] ||
    log "OKE_CP_VERSION $OKE_CP_VERSION is not this script's release ($RELEASE_TAG): checking against its SHA256SUMS"
fi

wanted=("$bin_asset" "$config_asset")
if [[ "$sums_from" == script ]]; then
  printf '%s\n' "$RELEASE_SHA256SUMS" >"$staging/SHA256SUMS"
else
  wanted+=(SHA256SUMS)
fi

if [[ -n "$OKE_CP_LOCAL_DIR" ]]; then
  log "using release files from $OKE_CP_LOCAL_DIR (no download)"
  for f in "${wanted[@]}"; do
    [[ -f "$OKE_CP_LOCAL_DIR/$f" ]] || die "$OKE_CP_LOCAL_DIR/$f is missing"
    cp "$OKE_CP_LOCAL_DIR/$f" "$staging/$f"
  done
else
  if [[ "$OKE_CP_BASE_URL" == *"/OWNER/"* ]]; then
    die "this copy of cloud-init.sh names no release repository (OWNER placeholder): use the cloud-init.sh of a release, or set OKE_CP_BASE_URL or OKE_CP_LOCAL_DIR"
  fi
  base="${OKE_CP_BASE_URL%/}"
  log "downloading $OKE_CP_VERSION ($arch) from $base with $downloader"
  for f in "${wanted[@]}"; do
    fetch "$base/$f" "$staging/$f" || die "download of $base/$f failed"
  done
fi

# Both files are checked before either is installed, so a bad download changes nothing.
for f in "$bin_asset" "$config_asset"; do
  expected="$(awk -v name="$f" '$2 == name { print $1; exit }' "$staging/SHA256SUMS")"
  [[ "$expected" =~ ^[0-9a-f]{64}$ ]] || die "the checksums ($sums_from) have no entry for $f"
  actual="$(sha256sum "$staging/$f" | awk '{ print $1 }')"
  [[ "$actual" == "$expected" ]] || die "checksum mismatch for $f (expected $expected, got $actual): nothing installed"
done

install_file() { # install_file SOURCE DEST MODE: write beside DEST, then rename over it
  local dir tmp
  dir="$(dirname "$2")"
  mkdir -p "$dir"
  tmp="$(mktemp "$dir/.$(basename "$2").XXXXXX")"
  install -m "$3" "$1" "$tmp"
  mv -f "$tmp" "$2"
}
install_file "$staging/$bin_asset" "${OKE_CP_ROOT}${BIN_DIR}/${BIN_NAME}" 0755
if [[ -n "$OKE_CP_WORKLOAD_IDENTITY" ]]; then
  # The checked file with this node's settings: its env block replaced, the audience if given.
  {
    echo "      - name: OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY"
    echo "        value: \"$OKE_CP_WORKLOAD_IDENTITY\""
    echo "      - name: OKE_CREDENTIAL_PROVIDER_NODE_IDENTITY"
    echo "        value: \"$OKE_CP_NODE_IDENTITY\""
    if [[ "$OKE_CP_WORKLOAD_IDENTITY" == oke ]]; then
      echo "      - name: OKE_CREDENTIAL_PROVIDER_PROXYMUX_URL"
      echo "        value: \"$OKE_CP_PROXYMUX_URL\""
      echo "      - name: OKE_CREDENTIAL_PROVIDER_CLUSTER_CA"
      echo "        value: \"$OKE_CP_CLUSTER_CA\""
    else
      echo "      - name: OKE_CREDENTIAL_PROVIDER_IDENTITY_DOMAIN_URL"
      echo "        value: \"$OKE_CP_IDENTITY_DOMAIN_URL\""
      echo "      - name: OKE_CREDENTIAL_PROVIDER_FEDERATION_TOKEN_TYPE"
      echo "        value: \"$OKE_CP_FEDERATION_TOKEN_TYPE\""
    fi
  } >"$staging/env"
  awk -v env="$staging/env" -v audience="$OKE_CP_TOKEN_AUDIENCE" '
    /^    env:$/ { print; while ((getline line < env) > 0) print line; skip = 1; next }
    skip && /^    [a-zA-Z]/ { skip = 0 }
    skip { next }
    audience != "" && /^      serviceAccountTokenAudience: / {
      print "      serviceAccountTokenAudience: \"" audience "\""; next
    }
    { print }
  ' "$staging/$config_asset" >"$staging/config.yaml"
  grep -q OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY "$staging/config.yaml" ||
    die "$config_asset has no env block to fill in"
  install_file "$staging/config.yaml" "${OKE_CP_ROOT}${CONFIG_PATH}" 0644
  log "per-workload identity ($OKE_CP_WORKLOAD_IDENTITY): kubelet must be 1.34 or newer; apply rbac-workload-identity.yaml to the cluster"
else
  install_file "$staging/$CONFIG_ASSET" "${OKE_CP_ROOT}${CONFIG_PATH}" 0644
fi
log "installed ${BIN_DIR}/${BIN_NAME} and ${CONFIG_PATH}"

# Warm the token cache, so that kubelet's first pull of a private image finds a token on disk.
# In the background, bounded in time, its output in a log file rather than on this script's
# pipes: it never fails the bootstrap nor holds it up, and kubelet works the same without it.
if [[ "$OKE_CP_WARM" != "false" ]] && command -v timeout >/dev/null; then
  warm_log="${OKE_CP_ROOT}/var/log/oke-credential-provider-warm.log"
  mkdir -p "$(dirname "$warm_log")"
  (timeout "$OKE_CP_WARM_TIMEOUT" "${OKE_CP_ROOT}${BIN_DIR}/${BIN_NAME}" warm \
    </dev/null >>"$warm_log" 2>&1 || echo "warm ended with status $?" >>"$warm_log") &
  log "warming the token cache in the background (at most ${OKE_CP_WARM_TIMEOUT} s; see ${warm_log#"$OKE_CP_ROOT"})"
fi

if [[ "$OKE_CP_RUN_OKE_INIT" == "false" ]]; then
  log "OKE_CP_RUN_OKE_INIT=false: not running oke-init.sh; pass kubelet: $KUBELET_FLAGS"
  exit 0
fi

kubelet_args="$KUBELET_FLAGS"
[[ -z "$OKE_CP_EXTRA_KUBELET_ARGS" ]] || kubelet_args="$kubelet_args $OKE_CP_EXTRA_KUBELET_ARGS"

mkdir -p "$(dirname "$OKE_CP_OKE_INIT")"
fetch "${OKE_CP_IMDS_URL%/}/instance/metadata/oke_init_script" "$staging/oke_init_script" \
  "Authorization: Bearer Oracle" || die "fetching oke_init_script from IMDS failed"
base64 --decode <"$staging/oke_init_script" >"$OKE_CP_OKE_INIT"
log "running oke-init.sh with kubelet flags: $kubelet_args"
# One separate, double-quoted argument: OKE does not apply the --kubelet-extra-args="..." form.
bash "$OKE_CP_OKE_INIT" --kubelet-extra-args "$kubelet_args"
