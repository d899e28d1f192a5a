#!/bin/sh
# Installs the Debian packages the journal and its tests need. Idempotent; needs root.
# Skips the network entirely when every package is already present.
set -eu
PACKAGES="poppler-utils qpdf fonts-dejavu-core openssl postgresql-client chromium libicu-dev pkg-config g++ python3-dev tzdata libnss3-tools"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing (run this script as root)" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
