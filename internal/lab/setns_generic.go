//go:build linux && (arm64 || riscv64 || loong64)

package lab

const sysSetns = 268 // setns(2) in the generic syscall table
