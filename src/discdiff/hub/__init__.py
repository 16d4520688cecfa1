"""HuggingFace model folders: their format (`format`: config.json, weights, hub ids) and the
published checkpoints' weight names (`weight_names`). Loading such a folder as a model and
exporting a run into one are the loading layer's (`discdiff.loading`); `remote/` is the modelling
code an exported folder carries for `trust_remote_code=True`.
"""
