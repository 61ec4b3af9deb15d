# Oracle token ids for engines/candle/tests/tokenizer.rs: Hugging Face `tokenizers` (an
# independent implementation) built from the GGUF file's own vocabulary and merges, with
# SmolLM2's pre-tokenizer (digits split one by one, then GPT-2's byte-level pattern).
import sys, json
from gguf import GGUFReader
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
r = GGUFReader(sys.argv[1])
def arr(key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode('utf-8') for i in f.data]
tokens = arr('tokenizer.ggml.tokens'); merges = arr('tokenizer.ggml.merges')
types = [int(r.fields['tokenizer.ggml.token_type'].parts[i][0]) for i in r.fields['tokenizer.ggml.token_type'].data]
vocab = {t: i for i, t in enumerate(tokens)}
tok = Tokenizer(models.BPE(vocab, [tuple(m.split(' ', 1)) for m in merges]))
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
for s in json.load(open(sys.argv[2])):
    print(json.dumps(s), tok.encode(s).ids)
