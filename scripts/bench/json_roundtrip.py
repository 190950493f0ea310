# python3: build and round-trip a 150k-element JSON document.
import json

doc = [{"id": i, "name": "item-%d" % i, "tags": ["a", "b", str(i % 97)], "score": i * 0.25} for i in range(150000)]
text = json.dumps(doc)
back = json.loads(text)
print(len(text), len(back))
