"""Side-by-side benchmark of vst against restic, borg and git (see bench/README.md)."""
