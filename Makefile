# apr — build, test and package.
#
#   make deps        install what is missing (Debian packages), quietly
#   make             build ./apr and build/libapr.so (CUDA too if nvcc is found)
#   make test        C runtime tests + busted specs; ends with "N passed, N failed, N skipped"
#   make test-asan   the C tests and the malformed-file corpus under AddressSanitizer
#   make fuzz        libFuzzer on every tests/fuzz target, the GGUF and APR readers among them (FUZZ_SECONDS each, default 60)
#   make bundle      a relocatable folder dist/apr (binary, Lua, libraries via $ORIGIN)
#   make model       fetch and check the built-in default model into models/

VERSION   := 0.1.0
GIT_REV   := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)
CC        ?= cc
LUAJIT    ?= luajit
BUILD     := build
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
LIBDIR    := /usr/lib/$(MULTIARCH)

CFLAGS    ?= -O2 -g
# Sanitizer builds add their flags here: CFLAGS given on make's command line
# would replace the includes and defines below, not extend them.
SANITIZE  ?=
CFLAGS    += -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -D_GNU_SOURCE -fPIC -pthread \
             -Iruntime/include -Iruntime -I/usr/include/luajit-2.1 \
             -DAPR_VERSION='"$(VERSION)"'
CFLAGS    += $(SANITIZE)
LDLIBS    := -Wl,--push-state,--no-as-needed -luv -Wl,--pop-state -lcurl -lcrypto -llz4 -lzstd -lxxhash -lm -ldl -lpthread

# CUDA: compiled whenever the toolkit's nvcc is found; the binary still runs
# without a GPU (cudart is linked statically and finds the driver at run time).
NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifneq ($(NVCC),)
  CUDA_SRC   := $(wildcard kernels/*.cu)
  CUDA_OBJ   := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
  CFLAGS     += -DAPR_CUDA -I$(CUDA_HOME)/include -I.
  NVCCFLAGS  ?= -O3 -lineinfo
  NVCCFLAGS  += -std=c++17 -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90 \
                -Xcompiler -fPIC -Iruntime/include -Iruntime -Ikernels -I. -DAPR_CUDA
  CUDA_LIBS  := -L$(CUDA_HOME)/lib64 -lcudart_static -lrt -lstdc++
endif

RUNTIME_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*/*.c runtime/*/*/*.c))
RUNTIME_OBJ := $(RUNTIME_SRC:%.c=$(BUILD)/obj/%.o) $(CUDA_OBJ)
TEST_SRC    := $(wildcard tests/runtime/*.c tests/runtime/*/*.c tests/runtime/*/*/*.c)
LUAJIT_A    := $(LIBDIR)/libluajit-5.1.a

.PHONY: FORCE all deps test test-c test-lua test-asan fuzz bundle model clean ffi
all: apr $(BUILD)/libapr.so lua/apr/ffi.lua

deps:
	@scripts/deps.sh

# ---------------------------------------------------------------- objects
# Each object depends on the flags it was compiled with, kept in a file
# that is rewritten only when they change: `make CFLAGS=-O0` after `make`
# rebuilds everything, and a plain `make` after it rebuilds it back.
# (quote: the flags as one single-quoted shell word; they hold quotes themselves)
quote = '$(subst ','\'',$(1))'
$(BUILD)/cflags: FORCE
	@mkdir -p $(BUILD)
	@printf '%s\n' $(call quote,$(CC) $(CFLAGS)) > $@.tmp
	@cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@
$(BUILD)/nvccflags: FORCE
	@mkdir -p $(BUILD)
	@printf '%s\n' $(call quote,$(NVCC) $(NVCCFLAGS)) > $@.tmp
	@cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@

$(BUILD)/obj/%.o: %.c $(BUILD)/cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(BUILD)/nvccflags
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# The git revision goes into version.c through a header that is rewritten
# only when the revision changes, so a commit rebuilds one file, not all.
$(BUILD)/git_rev.h: FORCE
	@mkdir -p $(BUILD)
	@echo '#define APR_GIT_REV "$(GIT_REV)"' > $@.tmp
	@cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@
$(BUILD)/obj/runtime/core/version.o: $(BUILD)/git_rev.h
$(BUILD)/obj/runtime/core/version.o: CFLAGS += -include $(BUILD)/git_rev.h
FORCE:

# ---------------------------------------------------------------- products
$(BUILD)/libapr.a: $(RUNTIME_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libapr.so: $(RUNTIME_OBJ)
	$(CC) -shared -o $@ $^ $(CUDA_LIBS) $(LDLIBS)

# The runtime's symbols are exported from the executable (--export-dynamic)
# so Lua's ffi.C finds them, and LuaJIT's own for Debian's luv and cjson
# modules. $ORIGIN/lib is where a bundle keeps the shared libraries.
apr: $(BUILD)/obj/runtime/main.o $(BUILD)/libapr.a lua/apr/ffi.lua
	$(CC) -o $@ $(BUILD)/obj/runtime/main.o -Wl,--whole-archive $(BUILD)/libapr.a -Wl,--no-whole-archive \
	    $(LUAJIT_A) -Wl,--export-dynamic -Wl,-rpath,'$$ORIGIN/lib' $(CUDA_LIBS) $(LDLIBS)

lua/apr/ffi.lua: runtime/include/apr.h scripts/gen_ffi.lua
	$(LUAJIT) scripts/gen_ffi.lua $< > $@.tmp && mv $@.tmp $@

# ---------------------------------------------------------------- tests
$(BUILD)/test_runtime: $(TEST_SRC) $(BUILD)/libapr.a $(BUILD)/fake-nvml/libnvidia-ml.so.1
	$(CC) $(CFLAGS) -Itests/runtime -o $@ $(TEST_SRC) $(BUILD)/libapr.a $(CUDA_LIBS) $(LDLIBS)

# A stand-in for the driver's NVML library (tests/fixtures/nvml), so the C
# test and apr bench's specs check the NVML path without a GPU.
$(BUILD)/fake-nvml/libnvidia-ml.so.1: tests/fixtures/nvml/fake_nvml.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -shared -fPIC -o $@ $<

# The oracles' venv is per checkout: made here too, so a fresh clone's
# `make && make test` has it (where it cannot be made, the oracle tests
# fail and say to run `make deps`).
test: all $(BUILD)/test_runtime
	@scripts/pyenv.sh || echo "test oracles: scripts/pyenv.sh failed (run make deps)"
	@rm -rf $(BUILD)/results && mkdir -p $(BUILD)/results
	-@$(BUILD)/test_runtime --counts $(BUILD)/results/c.counts
	-@./apr run tests/busted.lua --counts $(BUILD)/results/lua.counts
	@scripts/test_summary.sh $(BUILD)/results c lua

test-c: $(BUILD)/test_runtime
	$(BUILD)/test_runtime $(T)

test-lua: all
	./apr run tests/busted.lua $(T)

# AddressSanitizer + UBSan build of the runtime, its C tests, and the apr
# binary run over the malformed-file corpus (tests/fixtures/malformed, see
# tests/malformed/run.sh) and exiting with models, contexts and engines
# alive (tests/asan/exit_order.sh).
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer
test-asan:
	$(MAKE) --no-print-directory BUILD=build/asan SANITIZE="$(ASAN_FLAGS)" NVCC= \
	    build/asan/test_runtime build/asan/apr
	@scripts/pyenv.sh || echo "test oracles: scripts/pyenv.sh failed (run make deps)"
	@rm -rf build/asan/results && mkdir -p build/asan/results
	-@ASAN_OPTIONS=detect_leaks=1 build/asan/test_runtime --counts build/asan/results/c.counts
	-@APR_BIN=build/asan/apr ASAN_OPTIONS=detect_leaks=1 tests/malformed/run.sh build/asan/results/malformed.counts
	-@APR_BIN=build/asan/apr ASAN_OPTIONS=detect_leaks=1 tests/asan/exit_order.sh build/asan/results/exit.counts
	@scripts/test_summary.sh build/asan/results c malformed exit

build/asan/apr: $(BUILD)/obj/runtime/main.o $(BUILD)/libapr.a lua/apr/ffi.lua
	$(CC) $(CFLAGS) -o $@ $(BUILD)/obj/runtime/main.o -Wl,--whole-archive $(BUILD)/libapr.a -Wl,--no-whole-archive \
	    $(LUAJIT_A) -Wl,--export-dynamic $(LDLIBS)
	@ln -sfn $(CURDIR)/lua $(dir $@)lua  # apr finds its Lua files beside the executable

# libFuzzer needs clang; the fuzz build has its own object folder. Every
# target in tests/fuzz/*_fuzz.c is built and run for FUZZ_SECONDS; each one
# that builds and runs without a finding counts as one passed test in
# build/fuzz/results/fuzz.counts (a build failure or a finding: one failed,
# the reproducer under build/fuzz/artifacts/). New inputs go to FUZZ_OUT:
# the kept corpus by default, so a long run grows it; CI's short runs write
# them under build/ instead.
FUZZ_SECONDS ?= 60
FUZZ_OUT     ?= tests/fuzz/corpus
FUZZ_TARGETS := $(patsubst tests/fuzz/%_fuzz.c,%,$(wildcard tests/fuzz/*_fuzz.c))
fuzz:
	@rm -rf build/fuzz/results && mkdir -p build/fuzz/results build/fuzz/artifacts
	@passed=0; failed=0; \
	if ! $(MAKE) --no-print-directory BUILD=build/fuzz CC=clang NVCC= \
	        SANITIZE="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" build/fuzz/libapr.a; then \
	    echo "FAIL fuzz: the runtime does not build with clang"; \
	    failed=$(words $(FUZZ_TARGETS)); \
	else for t in $(FUZZ_TARGETS); do \
	    if ! clang -O1 -g -fsanitize=fuzzer,address,undefined -Iruntime/include -Iruntime -D_GNU_SOURCE \
	            tests/fuzz/$${t}_fuzz.c build/fuzz/libapr.a $(LDLIBS) -o build/fuzz/$$t; then \
	        echo "FAIL fuzz $$t: does not build"; failed=$$((failed + 1)); continue; \
	    fi; \
	    mkdir -p $(FUZZ_OUT)/$$t; \
	    echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
	    if build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	            -artifact_prefix=build/fuzz/artifacts/$$t- $(FUZZ_OUT)/$$t \
	            $$( [ "$(FUZZ_OUT)" != tests/fuzz/corpus ] && [ -d tests/fuzz/corpus/$$t ] && echo tests/fuzz/corpus/$$t ) \
	            $$( [ -d tests/fuzz/seeds/$$t ] && echo tests/fuzz/seeds/$$t ) \
	            $$( [ -d tests/fixtures/malformed-$$t ] && echo tests/fixtures/malformed-$$t ); then \
	        passed=$$((passed + 1)); \
	    else \
	        echo "FAIL fuzz $$t: exit $$? (a finding's reproducer is in build/fuzz/artifacts/)"; failed=$$((failed + 1)); \
	    fi; \
	done; fi; \
	echo "$$passed $$failed 0" > build/fuzz/results/fuzz.counts
	@scripts/test_summary.sh build/fuzz/results fuzz

# ---------------------------------------------------------------- packaging
bundle: all
	@scripts/bundle.sh dist/apr

model:
	@scripts/fetch_model.sh

clean:
	rm -rf build apr lua/apr/ffi.lua dist
