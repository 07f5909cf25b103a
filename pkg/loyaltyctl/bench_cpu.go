package loyaltyctl

import "runtime"

func numCPU() int { return runtime.NumCPU() }
