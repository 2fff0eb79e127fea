"""The contracts every stage shares, with no torch: file I/O (atomic writes), the trace format,
label distributions and the alignment metrics. The lowest layer: it imports no other stage."""
