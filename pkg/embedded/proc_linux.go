package embedded

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the child when this process dies, so a test binary
// killed by a timeout leaves no redis-server behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
