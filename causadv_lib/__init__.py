"""causadv: CausAdv (Debbi), causal detection of adversarial examples, as a library.

Data flows one way, and the layout follows it (a module imports only its own layer and those above it here;
tests/test_architecture.py checks it, and that no import circle exists):

  vocabulary  config (paths, seed, profiles), vocab (datasets, attack keys, eps labels, strategy variants),
              paper (the paper's numbers, read from paper_numbers.json), checks (parameter checks), io (atomic
              writes, JSON, plain output names), text (prose numbers, escaping), pixels (the one pixel contract),
              logprob (exact log-probability), cache (results on disk, keyed by their inputs and code)
  data        data/ (manifest, sha256 verification, fetch, images, pools), preprocess, spread
  models      keras_graph (the one adapter to Keras internals: logits, default CI layer), runner (the one fixed-batch
              forward pass), zoo/ (registry, custom models, TFLite rebuild), samples (evaluation lists)
  CI          ci/ (counterfactual information of every filter of a layer, paper section 3.1)
  method      prototypes (3.2), strategies (the four detection strategies), art_imports (ART, imported once and
              quietly), attacks (ART), defences (ART
              purifiers), heatmaps (causal maps, Grad-CAM), confidence (baselines from the logits), metrics,
              detector (the strategies as one ART evasion detector, calibrated on clean images only), peers
              (the peer detectors on the same images: MSP, feature squeezing, Mahalanobis, ART's subset scan)
  experiment  experiment (the shared, cached experiment of notebooks 02 onwards; its groups)
  analysis    analysis/ (tables, confidence, defences, heatmaps, reproduction: rows, pivots, verdicts, sentences)
  report      plots, report (results JSON, tables, figures of a notebook run), webpage (the page and
              reproduction.md), cli/ (the ``causadv`` command line: inspect, detect)
"""
__version__ = "0.1.0"
