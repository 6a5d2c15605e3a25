"""BPE training at scale from the pipeline's Parquet shards.

* :mod:`pipeline.bpe.count` — distributed pretoken counting on Ray (with a byte mixture over a
  column such as ``lang``), reduced into one 64-bit count table;
* :mod:`pipeline.bpe.trainer` — training from the counts, merge for merge what
  ``tokenizers``' own trainer produces on the same text;
* :mod:`pipeline.bpe.train` — the two together, writing ``tokenizer.json`` and a report.
"""
