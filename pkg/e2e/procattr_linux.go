package e2e

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill the child when the test or benchmark process dies, so a
// crashed run leaves no services behind.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
