"""losslens: which abilities of a language model are emergent, and at what pre-training loss do they appear?

Data flows one way:
    world -> data -> model -> train -> evaluate -> store -> analyze -> report
"""

__version__ = "0.1.0"
