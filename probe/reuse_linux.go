package probe

// soReusePort is SO_REUSEPORT on Linux (asm-generic/socket.h); the syscall
// package does not export it.
const soReusePort = 0xf
