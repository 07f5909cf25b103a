// Command sweeper evaluates customers whose inactivity deadline the pipeline's event-time
// watermark has passed (a customer who simply stops buying), and seals the population RFM cut
// points at each boundary day once every customer has been evaluated through it.
package main

import (
	"os"

	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

func main() {
	os.Exit(wiring.Main(wiring.Binary{Name: "sweeper", HTTPDefault: "127.0.0.1:9105",
		Summary: "Evaluates customers whose inactivity deadline the event-time watermark has passed, and seals the RFM cut points at each boundary day.",
		Run:     wiring.RunSweeper}))
}
