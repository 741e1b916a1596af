"""openai_client.py PORT KEY — drives `apr serve` with the official openai
client from PyPI and prints one JSON object with what came back; the spec
(openai_spec.lua) checks it. Any exception is a failure (exit 1)."""
import json
import sys

import openai

port, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=30)
out = {"version": openai.__version__}

models = client.models.list()
out["models"] = [m.id for m in models.data]
model = out["models"][0]

c = client.completions.create(model=model, prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=1)
out["completion"] = {"text": c.choices[0].text, "finish_reason": c.choices[0].finish_reason,
                     "usage": c.usage.model_dump(), "tokens": c.choices[0].logprobs.tokens}

parts = []
for chunk in client.completions.create(model=model, prompt="Once upon a time", max_tokens=5, temperature=0,
                                       stream=True):
    parts.append(chunk.choices[0].text)
out["completion_stream"] = "".join(parts)

messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
r = client.chat.completions.create(model=model, messages=messages, max_tokens=6, temperature=0, seed=3,
                                   logprobs=True, top_logprobs=2)
out["chat"] = {"content": r.choices[0].message.content, "role": r.choices[0].message.role,
               "finish_reason": r.choices[0].finish_reason, "usage": r.usage.model_dump(),
               "n_logprobs": len(r.choices[0].logprobs.content)}

text, finish, usage = [], None, None
stream = client.chat.completions.create(model=model, messages=messages, max_tokens=6, temperature=0, seed=3,
                                        stream=True, stream_options={"include_usage": True})
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    for choice in chunk.choices:
        if choice.delta.content:
            text.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
out["chat_stream"] = {"content": "".join(text), "finish_reason": finish, "usage": usage}

try:
    client.chat.completions.create(model=model, messages=[], max_tokens=1)
    out["bad_request"] = None
except openai.BadRequestError as e:
    out["bad_request"] = {"status": e.status_code, "param": e.body.get("param") if isinstance(e.body, dict) else None}

try:
    openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()
    out["auth"] = None
except openai.AuthenticationError as e:
    out["auth"] = {"status": e.status_code}

print(json.dumps(out))
