# A small python3 workload for the unwinder check: build and round-trip JSON.
import json

doc = [{"id": i, "name": "item-%d" % i, "tags": ["a", str(i % 7)]} for i in range(3000)]
print(len(json.loads(json.dumps(doc))))
