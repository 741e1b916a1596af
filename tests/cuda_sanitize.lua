-- cuda_sanitize.lua — a short CUDA workload for compute-sanitizer: every
-- kernel family on the fixture models, small enough to run under memcheck
-- and racecheck in a minute or two.
--
--   compute-sanitizer --tool memcheck --leak-check no ./apr run tests/cuda_sanitize.lua
--   compute-sanitizer --tool racecheck ./apr run tests/cuda_sanitize.lua
--
-- (APR_CUDA_NO_GRAPHS=1 as well, to check the kernels outside graphs.)
-- Per model: a long prompt (prefill tiles, FlashAttention), then steps of
-- 1, 2 (dp4a decode), 3, 9 and 16 tokens (tensor-core decode kernels, split
-- attention) over two sequences, and one step that wants every token's logits.
-- Exit 1 on any runtime error; the sanitizer prints its own summary.
local core = require "apr.core"
local cjson = require "cjson"
local C, ffi = core.C, core.ffi

if C.apr_device_count() == 0 then
    io.stderr:write("cuda_sanitize.lua: no CUDA device\n")
    os.exit(1)
end

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

for _, model in ipairs({ "tiny-q4_k_m", "gqa5-q4_k_m", "tiny-q8_0" }) do
    local g = cjson.decode(read("tests/fixtures/golden/" .. model .. ".long.json"))
    local mp = ffi.new("apr_model_params")
    C.apr_model_params_default(mp)
    mp.device = C.APR_DEVICE_CUDA
    local mb = ffi.new("apr_model *[1]")
    core.check(C.apr_model_load("tests/fixtures/models/" .. model .. ".gguf", mp, mb))
    local info = ffi.new("apr_model_info")
    C.apr_model_get_info(mb[0], info)
    local cp = ffi.new("apr_context_params")
    C.apr_context_params_default(cp)
    cp.n_ctx, cp.n_batch, cp.n_seq = 2048, 1024, 2
    local cb = ffi.new("apr_context *[1]")
    core.check(C.apr_context_new(mb[0], cp, cb))

    local np = #g.prompt_tokens
    local ids, seq = ffi.new("int32_t[?]", np), ffi.new("int32_t[?]", np)
    for i = 1, np do ids[i - 1] = g.prompt_tokens[i] end
    local out = ffi.new("int32_t[?]", np)
    core.check(C.apr_decode_greedy(cb[0], ffi.new("apr_batch", { n = np, ids = ids }), out))
    for _, n in ipairs({ 1, 2, 3, 9, 16 }) do
        for i = 0, n - 1 do ids[i], seq[i] = 100 + i, i % 2 end
        core.check(C.apr_decode_greedy(cb[0], ffi.new("apr_batch", { n = n, ids = ids, seq = seq }), out))
    end
    local want = ffi.new("int8_t[4]", { 1, 1, 1, 1 })
    local logits = ffi.new("float[?]", 4 * info.n_vocab)
    for i = 0, 3 do ids[i], seq[i] = 200 + i, 0 end
    core.check(C.apr_decode(cb[0], ffi.new("apr_batch", { n = 4, ids = ids, seq = seq, want_logits = want }), logits))
    print(model .. ": ok")
    C.apr_context_free(cb[0])
    C.apr_model_free(mb[0])
end
