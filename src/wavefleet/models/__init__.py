"""The model pipeline: fetch a GGUF file, quantize it with llama.cpp, check it against a placement.

    fetch.py     a local path or an http(s) URL into a folder: sha256 verified, resumable (`NAME.part`
                 and HTTP Range), the file appearing whole under its name or not at all
    quantize.py  llama.cpp's own `llama-quantize`, from the build the engine comes from, writing
                 its output atomically
    check.py     a GGUF's metadata (gguf package) and whether it fits a placement (sizing engine)

Each is a function of its inputs with a progress callback; `wave model` (cli/model.py) prints
progress and writes one operator event per run (gateway/security/events.py).
"""
