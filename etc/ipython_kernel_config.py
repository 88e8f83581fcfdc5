# Installed by `make env` as .venv/etc/ipython/ipython_kernel_config.py: every kernel of the project's venv
# (papermill's, nbval's, JupyterLab's) reads it.
#
# TensorFlow's C++ core writes to file descriptor 2 before Python's logging exists ("All log messages before
# absl::InitializeLog() is called are written to STDERR", "oneDNN custom operations are on"), at every import,
# whatever TF_CPP_MIN_LOG_LEVEL says. ipykernel forwards such low-level output into the cell that imported
# TensorFlow. Not capturing it sends those lines to the terminal that started the kernel instead (the `make`
# log, JupyterLab's console), so they are kept out of the notebooks' outputs. Python's own sys.stdout and
# sys.stderr, warnings included, still reach the notebook.
c = get_config()  # noqa: F821 (IPython's config loader defines it)
c.IPKernelApp.capture_fd_output = False
