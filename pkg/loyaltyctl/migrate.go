package loyaltyctl

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/state"
)

func migrateStateCommand(out *cmdline.Output) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "migrate-state",
		Short: "convert a namespace's customers stored as hashes of text fields to the compact state",
		Long: `Customers are stored as one compact binary value each (about a third of the memory of the
former hash of text fields). Every write of a customer already converts it; this converts the
rest of the namespace at once, in place, while the services run: each customer is checked
against the version it was read at, and a service that writes it in between wins (and writes
the compact value itself). Tombstones of quarantined customers stay as they are. Safe to run
more than once.`,
		Args: cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNamespaceKeys(cmd.Context(), ns, func(_ *environment, rdb redisconn.Client, keys keyspace.Keyspace) error {
				m, err := state.MigrateHashes(cmd.Context(), rdb, keys)
				if err != nil {
					return err
				}
				if out.JSON() {
					return cmdline.WriteJSON(cmd.OutOrStdout(), m)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "namespace %s: %d migrated, %d compact already, %d written meanwhile by a service, %d tombstones left as they are, %d unreadable (quarantined at their next record)\n",
					keys.Namespace(), m.Migrated, m.Compact, m.Changed, m.Tombstones, m.Unreadable)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", "", "key namespace (default LOYALTY_NAMESPACE or live)")
	return cmd
}
