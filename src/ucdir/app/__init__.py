"""`python -m ucdir.app`: a web page (gradio) that restores uploaded photos with `restore()`.

`ucdir.app.engine` holds the logic (cached models, one restoration, the equivalent restore
command), `ucdir.app.layout` the page; `ucdir.app.__main__` is the Hydra entry point.
"""
