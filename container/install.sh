#!/bin/sh
# Installs dist into PREFIX, for the image Containerfile builds (and for
# anyone putting dist on a host, as the systemd export expects):
#   container/install.sh SRC PREFIX
# PREFIX/bin/dist is then the compiled binary where `deno compile` works (it
# downloads its runtime, denort, unless DENORT_BIN names one), else a
# wrapper that runs the sources with Deno: PREFIX/bin/deno, PREFIX/app (the
# sources), PREFIX/cache (their npm packages, fetched now, so nothing is
# fetched at run time). DIST_BUILD=compiled or =source picks one way and
# fails rather than fall back; DENO names the deno to build with.
set -eu
src=$(cd "$1" && pwd)
prefix=$2
deno=${DENO:-deno}
mode=${DIST_BUILD:-auto}
mkdir -p "$prefix/bin"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ "$mode" != source ]; then
  if (cd "$src" && NO_COLOR=1 "$deno" compile -A --output "$prefix/bin/dist" main.ts) >"$log" 2>&1; then
    echo "dist: installed the compiled binary at $prefix/bin/dist"
    exit 0
  fi
  if [ "$mode" = compiled ]; then
    cat "$log" >&2
    exit 1
  fi
  # The cause is the first numbered line of deno's error chain (e.g. the download of denort).
  why=$(grep -m1 -E '^ +1: ' "$log" | sed -E 's/^ +1: //' || true)
  echo "dist: deno compile did not work (${why:-see deno compile}); installing Deno and the sources"
fi

rm -rf "$prefix/app" "$prefix/cache"
mkdir -p "$prefix/app" "$prefix/cache"
cp "$(command -v "$deno")" "$prefix/bin/deno"
# The sources dist runs from (tests, benchmarks and the repository's own files stay out).
(cd "$src" && tar -cf - --exclude=./tests --exclude=./bench --exclude=./.git --exclude=./.ci \
  --exclude=./container --exclude=./dist --exclude=./node_modules --exclude=./test-artifacts \
  --exclude=./coverage .) | tar -xf - -C "$prefix/app"
DENO_DIR="$prefix/cache" "$prefix/bin/deno" cache --frozen "$prefix/app/main.ts" >"$log" 2>&1 ||
  { cat "$log" >&2; exit 1; }
cat >"$prefix/bin/dist" <<WRAPPER
#!/bin/sh
# dist from its sources (see container/install.sh): nothing is fetched or written at run time.
export DENO_DIR="$prefix/cache" DENO_NO_UPDATE_CHECK=1
exec "$prefix/bin/deno" run -A --cached-only --frozen --config "$prefix/app/deno.json" "$prefix/app/main.ts" "\$@"
WRAPPER
chmod 755 "$prefix/bin/dist"
echo "dist: installed Deno and the sources, run by $prefix/bin/dist"
