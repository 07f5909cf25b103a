package loyaltyctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-scoring/loyalty/pkg/cmdline"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// inputTopic maps the --topic of produce to its input topic.
func inputTopic(name string) (string, bool) {
	switch name {
	case "purchases":
		return event.TopicPurchases, true
	case "logins":
		return event.TopicLogins, true
	case "feedback":
		return event.TopicFeedback, true
	}
	return "", false
}

// LineError is one bad input line.
type LineError struct {
	Line int
	Err  error
}

// ParseInputLines reads JSON lines of one input topic (field names as in the Avro schema,
// occurred_at in RFC 3339), validates each, and returns the events or every bad line.
// Blank lines are skipped.
func ParseInputLines(r io.Reader, topic string, validator *event.Validator, now time.Time) ([]event.Input, []LineError, error) {
	var out []event.Input
	var bad []LineError
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		in, err := parseInput(text, topic)
		if err == nil {
			err = validator.Validate(in, now)
		}
		if err != nil {
			bad = append(bad, LineError{Line: line, Err: err})
			continue
		}
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading line %d: %w", line+1, err)
	}
	return out, bad, nil
}

func parseInput(text []byte, topic string) (event.Input, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	var err error
	switch topic {
	case event.TopicPurchases:
		var p event.Purchase
		err = dec.Decode(&p)
		return p, err
	case event.TopicLogins:
		var l event.Login
		err = dec.Decode(&l)
		return l, err
	default:
		var f event.Feedback
		err = dec.Decode(&f)
		return f, err
	}
}

// ProduceSummary is what produce prints when it is done.
type ProduceSummary struct {
	Produced int    `json:"produced"`
	Topic    string `json:"topic"`
}

func produceCommand(out *cmdline.Output) *cobra.Command {
	var topicName, file string
	cmd := &cobra.Command{
		Use:   "produce --topic purchases|logins|feedback --file FILE.jsonl",
		Short: "validate JSON-lines events and produce them as Avro to an input topic",
		Args:  cmdline.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			topic, ok := inputTopic(topicName)
			if !ok || file == "" {
				return Usagef("usage: loyaltyctl produce --topic purchases|logins|feedback --file FILE.jsonl")
			}
			return runProduce(cmd.Context(), topic, file, out, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&topicName, "topic", "", "purchases, logins or feedback")
	cmd.Flags().StringVar(&file, "file", "", "JSON-lines file (- for standard input)")
	return cmd
}

func runProduce(ctx context.Context, topic, file string, out *cmdline.Output, stdin io.Reader, stdout, stderr io.Writer) error {
	r := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("reading --file: %w", err)
		}
		defer f.Close()
		r = f
	}
	validator, err := event.NewValidator(event.DefaultLimits())
	if err != nil {
		return err
	}
	inputs, bad, err := ParseInputLines(r, topic, validator, time.Now())
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintf(stderr, "%s:%d: %v\n", file, b.Line, b.Err)
		}
		return fmt.Errorf("%d invalid lines; nothing was produced", len(bad))
	}
	env, err := loadEnvironment()
	if err != nil {
		return err
	}
	c, err := env.codec(ctx)
	if err != nil {
		return err
	}
	p, err := env.producer()
	if err != nil {
		return err
	}
	defer p.Close()
	admin, err := env.admin()
	if err != nil {
		return err
	}
	defer admin.Close()
	topic += env.cfg.TopicSuffix // the physical topic the services read (LOYALTY_TOPIC_SUFFIX)
	if err := admin.EnsureTopics(ctx, env.cfg.TopicSpec(topic, event.RoleInput)); err != nil {
		return err
	}
	records := make([]stream.Record, 0, len(inputs))
	for _, in := range inputs {
		v, err := c.Encode(in)
		if err != nil {
			return err
		}
		records = append(records, stream.Record{Topic: topic, Key: []byte(in.Customer()), Value: v})
	}
	for i := 0; i < len(records); i += 1000 {
		if err := p.Produce(ctx, records[i:min(i+1000, len(records))]...); err != nil {
			return fmt.Errorf("after %d of %d records: %w", i, len(records), err)
		}
	}
	if out.JSON() {
		return cmdline.WriteJSON(stdout, ProduceSummary{Produced: len(records), Topic: topic})
	}
	fmt.Fprintf(stdout, "produced %d records to %s\n", len(records), topic)
	return nil
}
