#!/bin/bash
# Delta benchmark: keel static delta, keel dynamic (FastCDC chunks + pack), xdelta3 -9,
# zstd --patch-from, bsdiff, casync (64 KiB) and a full zstd image, side by side on the same
# image pairs. Measures payload bytes, create time, apply time and apply peak RSS
# (/usr/bin/time), checks every applied output against the new image, and writes the tables
# into docs/benchmarks.md (between the delta-bench markers) and bench/results/.
#
# usage: bench/delta-bench.sh PAIRDIR [FMT|DIR:FMT ...]   (default formats: ext4 erofs squashfs)
#   PAIRDIR holds old.<fmt> and new.<fmt> (bench/make-image-pair.sh PAIRDIR [fmt] builds them);
#   DIR:FMT takes that format's pair from DIR instead (e.g. /work/pair-raw:squashfs-raw), so
#   every image type lands in one run and one table.
# env: KEEL (keel binary, default target/release/keel, built if missing), BSDIFF_TIMEOUT
#      (seconds, default 300: bsdiff's suffix sort can take hours on zero-filled ext4 images),
#      CHUNK_LEVEL (zstd level of keel's chunk pack, default 9), NO_DOCS=1 (do not touch docs).
set -euo pipefail
cd "$(dirname "$0")/.."
pair=${1:?usage: delta-bench.sh PAIRDIR [formats]}; shift || true
fmts=${*:-ext4 erofs squashfs}
keel=${KEEL:-target/release/keel}
bsdiff_timeout=${BSDIFF_TIMEOUT:-300}
chunk_level=${CHUNK_LEVEL:-9}
for tool in xdelta3 zstd bsdiff bspatch casync /usr/bin/time cmp; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/setup-debian.sh)" >&2; exit 1; }
done
[ -x "$keel" ] || cargo build --release -p keel-cli
work=$(mktemp -d /var/tmp/delta-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results
stamp=$(date -u +%Y-%m-%dT%H:%MZ)
md=$work/delta.md

# measure OUTVAR cmd...: runs cmd under /usr/bin/time; OUTVAR_t = seconds, OUTVAR_m = peak RSS KiB,
# OUTVAR_rc = exit code (124 = timeout).
measure() {
  local var=$1; shift
  local rc=0
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/cmd.log" 2>&1 || rc=$?
  local t m; read -r t m < <(tail -n 1 "$work/time")
  printf -v "${var}_t" '%s' "$t"; printf -v "${var}_m" '%s' "$m"; printf -v "${var}_rc" '%s' "$rc"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
verify() { cmp -s "$1" "$2" && echo ok || echo DIFFERS; }

{
  echo "Run $stamp on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), pair: \`$pair\`."
  [ -f "$pair/upgraded-packages.txt" ] && echo "Update: $(wc -l < "$pair/upgraded-packages.txt") upgraded Debian packages ($(cut -d/ -f1 "$pair/upgraded-packages.txt" | tr '\n' ' '))."
  echo
} > "$md"

summary=()
for spec in $fmts; do
  dir=$pair fmt=$spec
  if [[ $spec == *:* ]]; then dir=${spec%:*} fmt=${spec##*:}; fi
  old=$dir/old.$fmt new=$dir/new.$fmt
  [ -f "$old" ] && [ -f "$new" ] || { echo "skip $fmt: no $old / $new" >&2; continue; }
  size=$(stat -c %s "$new")
  echo "== $fmt: old $(stat -c %s "$old") new $size bytes" >&2
  rows=()
  row() { rows+=("$1|$2|$3|$4|$5|$6"); }   # method payload create apply rss_kib verified

  # keel static delta
  measure c "$keel" delta create "$old" "$new" -o "$work/keel.kd"
  measure a "$keel" delta apply --seed "$old" "$work/keel.kd" -o "$work/out"
  keel_bytes=$(stat -c %s "$work/keel.kd") keel_rss=$a_m
  row "keel static delta" "$keel_bytes" "$c_t" "$a_t" "$a_m" "$(verify "$work/out" "$new")"
  rm -f "$work/out"

  # keel dynamic: FastCDC 16/64/256 KiB index + pack; the device fetches the chunks it lacks
  measure c "$keel" delta index "$new" -o "$work/new.kidx" --pack "$work/new.kpack" --level "$chunk_level"
  "$keel" delta plan --index "$work/new.kidx" --seed "$old" > "$work/plan.txt"
  dyn_bytes=$(sed -n 's/.*= \([0-9]*\) bytes).*/\1/p' "$work/plan.txt")
  dyn_chunks=$(sed -n 's/^fetch [0-9]* chunks, \([0-9]*\) bytes.*/\1/p' "$work/plan.txt")
  dyn_index=$(stat -c %s "$work/new.kidx")
  measure a "$keel" delta assemble --index "$work/new.kidx" --seed "$old" --pack "$work/new.kpack" -o "$work/out"
  row "keel dynamic (FastCDC 64 KiB: index $dyn_index B + missing chunks $dyn_chunks B)" "$dyn_bytes" "$c_t" "$a_t" "$a_m" "$(verify "$work/out" "$new")"
  rm -f "$work/out" "$work/new.kpack"

  # xdelta3 -9 (default source window)
  measure c xdelta3 -e -f -9 -S djw -s "$old" "$new" "$work/x.xd"
  measure a xdelta3 -d -f -s "$old" "$work/x.xd" "$work/out"
  xd_bytes=$(stat -c %s "$work/x.xd")
  row "xdelta3 -9 -S djw" "$xd_bytes" "$c_t" "$a_t" "$a_m" "$(verify "$work/out" "$new")"
  rm -f "$work/out"

  # zstd --patch-from (window = whole old image)
  measure c zstd -19 -T1 -q -f --long=31 --patch-from="$old" "$new" -o "$work/z.zst"
  measure a zstd -d -q -f --long=31 --patch-from="$old" "$work/z.zst" -o "$work/out"
  zs_bytes=$(stat -c %s "$work/z.zst")
  row "zstd -19 --long=31 --patch-from" "$(stat -c %s "$work/z.zst")" "$c_t" "$a_t" "$a_m" "$(verify "$work/out" "$new")"
  rm -f "$work/out"

  # bsdiff 4 (suffix sort; may time out)
  measure c timeout "$bsdiff_timeout" bsdiff "$old" "$new" "$work/b.bsdiff"
  bs_bytes=-
  if [ "$c_rc" = 0 ]; then
    measure a bspatch "$old" "$work/out" "$work/b.bsdiff"
    bs_bytes=$(stat -c %s "$work/b.bsdiff")
    row "bsdiff 4.3" "$(stat -c %s "$work/b.bsdiff")" "$c_t" "$a_t" "$a_m" "$(verify "$work/out" "$new")"
  else
    row "bsdiff 4.3" "timeout" ">$bsdiff_timeout" "-" "-" "not finished"
  fi
  rm -f "$work/out" "$work/b.bsdiff"

  # casync 64 KiB: payload = chunks of new missing from old's store + the new index
  rm -rf "$work/store1" "$work/store2"
  casync make --store="$work/store1" "$work/old.caibx" "$old" >/dev/null 2>&1
  measure c casync make --store="$work/store2" "$work/new.caibx" "$new"
  missing=$(comm -13 <(cd "$work/store1" && find . -name '*.cacnk' | sort) <(cd "$work/store2" && find . -name '*.cacnk' | sort))
  chunk_bytes=$(cd "$work/store2" && printf '%s\n' "$missing" | grep . | xargs -r stat -c %s | awk '{s+=$1} END {print s+0}')
  ca_bytes=$((chunk_bytes + $(stat -c %s "$work/new.caibx")))
  measure a casync extract --seed="$old" --store="$work/store2" "$work/new.caibx" "$work/out"
  row "casync 64 KiB (index + missing chunks)" "$ca_bytes" "$c_t" "$a_t" "$a_m" "$(verify "$work/out" "$new")"
  rm -rf "$work/out" "$work/store1" "$work/store2"

  # full image, no delta
  measure c zstd -19 -T0 -q -f "$new" -o "$work/full.zst"
  measure a zstd -d -q -f "$work/full.zst" -o "$work/out"
  row "full image zstd -19 (no delta)" "$(stat -c %s "$work/full.zst")" "$c_t" "$a_t" "$a_m" "$(verify "$work/out" "$new")"
  rm -f "$work/out" "$work"/*.zst "$work"/*.xd "$work"/*.kd

  ratio() { [[ $2 =~ ^[0-9]+$ ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }' || echo "-"; }
  summary+=("| $fmt ($(mib "$size") MiB) | $(mib "$keel_bytes") MiB | **$(ratio "$keel_bytes" "$xd_bytes")** | $(ratio "$keel_bytes" "$zs_bytes") | $(ratio "$keel_bytes" "$bs_bytes") | **$(ratio "$keel_bytes" "$ca_bytes")** | $(ratio "$dyn_bytes" "$xd_bytes") | $(awk -v m="$keel_rss" 'BEGIN { printf "%.1f", m / 1024 }') MiB |")
  {
    echo "### $fmt (new image $(mib "$size") MiB, pair \`$dir\`)"
    echo
    echo "| method | payload bytes | MiB | % of image | ÷ xdelta3 -9 | keel static ÷ this | create s | apply s | apply peak RSS MiB | output |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for r in "${rows[@]}"; do
      IFS='|' read -r name bytes ct at rss ok <<< "$r"
      if [[ $bytes =~ ^[0-9]+$ ]]; then
        pct=$(awk -v b="$bytes" -v s="$size" 'BEGIN { printf "%.2f", 100 * b / s }')
        echo "| $name | $bytes | $(mib "$bytes") | $pct | $(ratio "$bytes" "$xd_bytes") | $(ratio "$keel_bytes" "$bytes") | $ct | $at | $(awk -v m="$rss" 'BEGIN { printf "%.1f", m / 1024 }') | $ok |"
      else
        echo "| $name | $bytes | - | - | - | - | $ct | $at | $rss | $ok |"
      fi
    done
    echo
  } >> "$md"
done

# Summary first: keel static payload as a ratio of each peer's (lower is better).
{
  echo "**Summary** (payload = bytes a device downloads; ratios are payload ÷ payload, lower is better for keel):"
  echo
  echo "| image (new size) | keel static | ÷ xdelta3 -9 | ÷ zstd --patch-from | ÷ bsdiff | ÷ casync 64 KiB | keel dynamic ÷ xdelta3 | keel apply RSS |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${summary[@]}"
  echo
  cat "$md"
} > "$work/full.md"
mv "$work/full.md" "$md"

cat "$md"
cp "$md" "bench/results/delta-$stamp.md"
if [ -z "${NO_DOCS:-}" ]; then
  doc=docs/benchmarks.md
  python3 - "$doc" "$md" <<'PY'
import sys
doc, md = sys.argv[1], sys.argv[2]
begin, end = "<!-- delta-bench:begin -->", "<!-- delta-bench:end -->"
text = open(doc).read()
new = open(md).read()
a, b = text.index(begin) + len(begin), text.index(end)
open(doc, "w").write(text[:a] + "\n" + new + text[b:])
PY
  echo "updated $doc" >&2
fi
