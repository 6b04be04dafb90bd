#!/usr/bin/env bash
# Re-fetches the GraphiQL page's third-party files into assets/graphiql/ from the npm registry,
# at the pinned versions below, and checks them: each tarball against the registry integrity
# pinned here, each extracted file against assets/graphiql/SHA256SUMS. The build never runs
# this (the files are committed and embedded in the binary); run it to audit them or, after
# changing a version here, with --update to rewrite SHA256SUMS, BUNDLED.txt and the README's
# table by hand.
#   scripts/vendor-graphiql.sh            # fetch and verify (a changed byte fails)
#   scripts/vendor-graphiql.sh --update   # fetch and record new checksums
set -euo pipefail
cd "$(dirname "$0")/.."

GRAPHIQL=3.9.0
REACT=18.3.1

# package@version  registry integrity (sha512 of the tarball, as `npm view <p> dist.integrity`)
PACKAGES=(
    "graphiql@$GRAPHIQL sha512-rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA=="
    "react@$REACT sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ=="
    "react-dom@$REACT sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw=="
)

# file in the package  ->  name under assets/graphiql/ (versioned: served as immutable)
FILES=(
    "graphiql graphiql.min.js graphiql-$GRAPHIQL.min.js"
    "graphiql graphiql.min.css graphiql-$GRAPHIQL.min.css"
    "graphiql LICENSE licenses/graphiql-$GRAPHIQL.LICENSE"
    "react umd/react.production.min.js react-$REACT.production.min.js"
    "react LICENSE licenses/react-$REACT.LICENSE"
    "react-dom umd/react-dom.production.min.js react-dom-$REACT.production.min.js"
    "react-dom LICENSE licenses/react-dom-$REACT.LICENSE"
)

update=false
[ "${1:-}" = --update ] && update=true

dest=assets/graphiql
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for entry in "${PACKAGES[@]}"; do
    read -r spec integrity <<<"$entry"
    name=${spec%@*}
    (cd "$work" && npm pack "$spec" --silent >/dev/null)
    tarball=$(ls "$work/$name"-[0-9]*.tgz)
    actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    if [ "$actual" != "$integrity" ]; then
        echo "error: $spec: tarball integrity $actual, pinned $integrity" >&2
        exit 1
    fi
    mkdir -p "$work/$name"
    tar -xzf "$tarball" -C "$work/$name"
done

mkdir -p "$dest/licenses"
for entry in "${FILES[@]}"; do
    read -r name from to <<<"$entry"
    cp "$work/$name/package/$from" "$dest/$to"
done

# The packages GraphiQL's UMD bundle contains (read from its source map, which is not
# vendored): their licences travel with the bundle, see README.md.
node -e '
const map = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const names = new Set();
for (const source of map.sources) {
  const found = [...source.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)/g)];
  if (found.length) names.add(found[found.length - 1][1]);
  else if (/^(\.\.\/)+(codemirror-graphql|graphiql-react|graphiql-toolkit|graphql-language-service)\//.test(source))
    names.add(source.replace(/^(\.\.\/)+/, "").split("/")[0] + " (graphiql monorepo)");
}
console.log([...names].sort().join("\n"));
' "$work/graphiql/package/graphiql.min.js.map" >"$work/BUNDLED.txt"

cd "$dest"
sums=$(sha256sum -- *.js *.css licenses/*)
if $update; then
    printf '%s\n' "$sums" >SHA256SUMS
    cp "$work/BUNDLED.txt" BUNDLED.txt
    echo "updated $dest (SHA256SUMS, BUNDLED.txt); now update README.md's table" >&2
else
    sha256sum --quiet -c SHA256SUMS
    diff -u BUNDLED.txt "$work/BUNDLED.txt"
    echo "ok: $dest matches npm (graphiql $GRAPHIQL, react/react-dom $REACT)" >&2
fi
