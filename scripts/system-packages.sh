#!/usr/bin/env bash
# The Debian packages `make demo`, `make test`, .ci/run and Cloud Build's test step need, installed
# by one script so the four cannot drift apart. As root it installs what is missing; otherwise it
# stops at once and prints the one command that installs them.
#
#   scripts/system-packages.sh demo   the demo: the Pub/Sub emulator (with Java 17) and ffmpeg
#   scripts/system-packages.sh test   the suite: the demo's, plus chromium (the clips page in a browser)
set -euo pipefail

need="${1:-test}"
launcher=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
missing=()
[ -x "$launcher" ] || missing+=(google-cloud-cli-pubsub-emulator openjdk-17-jre-headless)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ "$need" = test ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ "$need" = test ] && ! command -v terraform >/dev/null 2>&1; then
  # Not a Debian package: HashiCorp ships it. `make test` runs only `terraform fmt -check` with it.
  echo "terraform is not on PATH: install Terraform >= 1.7 (HashiCorp's apt repository or release zip); make test runs 'terraform fmt -check'" >&2
  exit 1
fi
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  echo "(google-cloud-cli-pubsub-emulator comes from Google's Cloud SDK apt source)" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
