-- groups.lua — the semantic groups of a trace: what each span, kernel and
-- syscall counts as in the flamegraph and the summary.
--
-- The tree follows the showcase spec's section H:
--   GPU kernels   matmul, attention, norm/rope, sampling, copies, other
--   Memory        model load (weights upload), zram, host-side copies
--   CPU           the span stacks of each thread (self time)
--   Syscalls      file/mmap, network, futex, GPU driver ioctl, other
--   Requests      HTTP requests, start to last byte (their lanes)
-- Span names come from runtime/trace/trace.h (keep the lists in step) and
-- from the Lua code (trace.name calls).
local M = {}

M.TOP = { "GPU kernels", "Memory", "CPU", "Syscalls", "Requests" }

-- Kernel groups, tried in order on the kernel's function name (lower case).
local KERNEL_RULES = {
    { "attention", { "attn", "attention", "flash", "fmha", "softmax" } },
    { "matmul", { "gemv", "gemm", "mma", "matmul", "splitk", "swiglu", "cutlass", "xmma", "cublas" } },
    { "norm/rope", { "norm", "rope" } },
    { "sampling", { "argmax", "sampl", "topk", "top_k", "multinomial" } },
    { "copies", { "embed", "gather", "repack", "copy", "memcpy", "memset", "transpose", "cast", "convert" } },
}

-- kernel(name) -> its group under "GPU kernels".
function M.kernel(name)
    local base = name:lower():match("^[^<(]*") or ""
    for _, rule in ipairs(KERNEL_RULES) do
        for _, word in ipairs(rule[2]) do
            if base:find(word, 1, true) then return rule[1] end
        end
    end
    return "other"
end

-- Spans that are memory operations rather than CPU work: they and what
-- they enclose go under "Memory".
local MEMORY_SPANS = {
    ["model load"] = true, ["weights upload"] = true, ["tensor allocation"] = true, ["H2D copy"] = true,
    ["D2H copy"] = true,
    ["zram compress"] = true, ["zram decompress"] = true,
}
function M.memory_span(name) return MEMORY_SPANS[name] or false end

-- Syscalls by kind. read/write/close/... on a socket count as network and
-- ioctl on /dev/nvidia* as the GPU driver's: the fd's path decides
-- (strace -y prints it).
local FILE = {}
for s in ([[open openat openat2 creat close close_range read pread64 readv preadv preadv2 write pwrite64 writev
  pwritev pwritev2 lseek stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2 readlink
  readlinkat getdents64 getcwd chdir mkdir mkdirat unlink unlinkat rename renameat renameat2 fsync fdatasync
  ftruncate fallocate fcntl dup dup2 dup3 pipe pipe2 mmap munmap mremap mprotect madvise brk msync mlock munlock
  sendfile copy_file_range splice memfd_create flock fadvise64 sync_file_range readahead inotify_add_watch
  eventfd2 getxattr lgetxattr fgetxattr]]):gmatch("%S+") do FILE[s] = true end
local NET = {}
for s in ([[socket socketpair bind listen accept accept4 connect getsockname getpeername setsockopt getsockopt
  sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg shutdown epoll_create epoll_create1 epoll_ctl epoll_wait
  epoll_pwait epoll_pwait2 poll ppoll select pselect6]]):gmatch("%S+") do NET[s] = true end

-- syscall(name, fd_path) -> its group under "Syscalls".
function M.syscall(name, fd_path)
    if name == "futex" or name == "futex_waitv" or name == "set_robust_list" then return "futex" end
    if name == "ioctl" and fd_path and fd_path:find("^/dev/nvidia") then return "GPU driver ioctl" end
    if fd_path and (fd_path:find("^socket:") or fd_path:find("^TCP") or fd_path:find("^UDP")
                    or fd_path:find("^UNIX")) then
        return "network"
    end
    if NET[name] then return "network" end
    if FILE[name] or name == "ioctl" then return "file/mmap" end
    return "other"
end

return M
