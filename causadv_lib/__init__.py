"""causadv: CausAdv (Debbi), causal detection of adversarial examples, as a library.

Modules, one concept each:
  config      paths, seeds and run profiles (the one place for parameters)
  data        data manifest, sha256-verified file access, fetching, datasets, image decoding
  preprocess  every model's input convention, documented in one place
  zoo         registry of models (name -> Keras model + preprocessing + classes + CI layer)
  ci          counterfactual information of every filter of a layer (paper section 3.1)
  prototypes  one prototype per class (paper section 3.2)
  cache       on-disk cache keyed by a hash of everything a result depends on
  report      results JSON, tables (CSV + Markdown) and figures (PNG + PDF)
"""
__version__ = "0.1.0"
