//go:build !linux

package embedded

import "os/exec"

// dieWithParent has no portable equivalent outside Linux; Close stops the child.
func dieWithParent(*exec.Cmd) {}
