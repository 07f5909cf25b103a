package devharness

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a pflag.Value for a size in bytes, written as GOMEMLIMIT is: an integer with
// an optional unit, B, KiB, MiB, GiB or TiB.
type byteSize struct{ n *int64 }

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

func (b *byteSize) String() string {
	if b.n == nil || *b.n == 0 {
		return ""
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b *byteSize) Set(v string) error {
	num, shift := v, uint(0)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(v, u.suffix); ok {
			num, shift = rest, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return fmt.Errorf("%q: want a size such as 460MiB, 1GiB or 500000000 (bytes)", v)
	}
	*b.n = n << shift
	return nil
}

func (b *byteSize) Type() string { return "size" }
