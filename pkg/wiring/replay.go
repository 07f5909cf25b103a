package wiring

import (
	"context"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/replay"
)

// Replay runs a replay (pkg/replay) into cfg.Namespace: it connects to the live namespace
// (following promotion) and then to the replay namespace, whose runtime marks derived events
// as replayed and shares the live runtime's Kafka admin, and hands replay.Run their pieces.
func Replay(ctx context.Context, base config.Common, cfg replay.Config, log *zap.Logger) (replay.Summary, error) {
	if err := cfg.Validate(); err != nil {
		return replay.Summary{}, err
	}
	liveRT, err := NewRuntime(ctx, base, log, Options{FollowActive: true})
	if err != nil {
		return replay.Summary{}, err
	}
	defer liveRT.Close()
	if err := cfg.CheckNotLive(liveRT.Keys.Namespace()); err != nil {
		return replay.Summary{}, err
	}
	// History must not bring an erased customer back, even into a Redis that lost the list.
	if _, err := liveRT.RestoreSuppression(ctx); err != nil {
		return replay.Summary{}, err
	}
	rcfg := base
	rcfg.Namespace = cfg.Namespace
	rt, err := NewRuntime(ctx, rcfg, log, Options{Replay: true, Admin: liveRT.Admin})
	if err != nil {
		return replay.Summary{}, err
	}
	defer rt.Close()
	return replay.Run(ctx, liveRT.ReplayNamespace(), rt.replayTarget(), cfg)
}

// ReplayNamespace returns the runtime's namespace data as pkg/replay takes it.
func (rt *Runtime) ReplayNamespace() replay.Namespace {
	return replay.Namespace{Redis: rt.Redis, Keys: rt.Keys}
}

// ReplayScores returns the runtime's namespace and policy, for replay.Compare.
func (rt *Runtime) ReplayScores() replay.Scores {
	return replay.Scores{Namespace: rt.ReplayNamespace(), Policy: rt.Policy}
}

// ReplayOutputs returns what replay.Compare reads derived events with.
func (rt *Runtime) ReplayOutputs() *replay.Outputs {
	return &replay.Outputs{Admin: rt.Admin, Codec: rt.Codec, Topics: replay.Topics{Suffix: rt.TopicSuffix}}
}

// replayTarget returns what replay.Run writes into the runtime's namespace with.
func (rt *Runtime) replayTarget() replay.Target {
	return replay.Target{Namespace: rt.ReplayNamespace(), Deployment: rt.Deployment, Admin: rt.Admin, Producer: rt.Producer,
		Codec: rt.Codec, Policy: rt.Policy, Topics: replay.Topics{Suffix: rt.TopicSuffix},
		Partitions: rt.Config.Partitions, ReplicationFactor: rt.Config.ReplicationFactor, Retention: rt.Config.OutputRetention, Log: rt.Log}
}

// RebuildQuarantined ends the quarantine of customer id in the live namespace (base's, or the
// promoted one with followActive) with its state from the finished replay namespace replayNS, brought up to date
// with its later records (replay.Rebuild). The live services keep running meanwhile.
func RebuildQuarantined(ctx context.Context, base config.Common, followActive bool, replayNS, id string, log *zap.Logger) (replay.RebuildSummary, error) {
	liveRT, err := NewRuntime(ctx, base, log, Options{FollowActive: followActive})
	if err != nil {
		return replay.RebuildSummary{}, err
	}
	defer liveRT.Close()
	rcfg := base
	rcfg.Namespace = replayNS
	rt, err := NewRuntime(ctx, rcfg, log, Options{Admin: liveRT.Admin})
	if err != nil {
		return replay.RebuildSummary{}, err
	}
	defer rt.Close()
	return replay.Rebuild(ctx, liveRT.replayTarget(), rt.ReplayNamespace(), id)
}
