"""The pipeline around the library: config (Hydra compose + schemas), studies, the grid the
Snakemake rules read (dag/), the cluster cost plan, model downloads and stand-ins, and the
adapter every workflow script calls. The top layer under the CLI: no other stage imports it."""
