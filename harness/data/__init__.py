"""Training data: source records, the synthesis task catalogue, the template and OpenAI
generators (with an on-disk request cache), cleaning, ECInstruct conversion and the mix.

Modules import nothing heavy at load time; the ``openai`` client is imported on first use.
"""
