"""Analysis: the rows, pivots, statistics, verdicts and sentences of the notebooks, computed from the shared
experiment (`causadv_lib.experiment`) and nothing else.

  tables      the paper's tables (1-3, Figure 3, the strategy-1 counts), attack success, CI statistics per
              group, the ROC rows and their compact pivot, the sentences comparing them with the paper
  confidence  the causal-or-confident comparison of notebook 08 (samples, ROC rows, bins, logistic models, verdict)
  defences    Table 4: every purifier on the clean set and each attack's successes
  heatmaps    the heatmap-consistency score's groups and ROC rows, and Figure 4's examples and panels
  reproduction  the claims of sections 4.2-5 at a glance (paper, ours, verdict), from a run's results JSON files
"""
