package bench

import (
	"time"
)

// Results is everything one run measured; results.json holds it.
type Results struct {
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Machine   Machine   `json:"machine"`
	Command   string    `json:"command"`
	Quick     bool      `json:"quick"`
	Scale     scale     `json:"scale"`
	History   History   `json:"history"`
	Bootstrap Bootstrap `json:"bootstrap"`
	Peak      Peak      `json:"peak"`
	Restart   Restart   `json:"restart"`
	CatchUp   CatchUp   `json:"catch_up"`
	Baseline  Baseline  `json:"baseline"`
	// Source is the transaction database, empty for PostgreSQL (as
	// results.json was before there was a choice). MariaDB holds the
	// figures of a MariaDB run that have no PostgreSQL counterpart.
	Source  string   `json:"source,omitempty"`
	MariaDB *MariaDB `json:"mariadb,omitempty"`
}

// Machine is where the figures were taken.
type Machine struct {
	CPU        string  `json:"cpu"`
	Cores      int     `json:"cores"`
	MemoryGiB  float64 `json:"memory_gib"`
	OS         string  `json:"os"`
	GoVersion  string  `json:"go"`
	PostgreSQL string  `json:"postgresql"`
	MariaDB    string  `json:"mariadb,omitempty"`
}

// History is the simulator's load of the source.
type History struct {
	Payments int64   `json:"payments"`
	Seconds  float64 `json:"seconds"`
}

// Bootstrap is scenario 3: first start on the history to the first closed
// minute.
type Bootstrap struct {
	Seconds     float64   `json:"seconds"`
	FirstClosed time.Time `json:"first_closed_minute"`
	PeakRSS     int64     `json:"peak_rss_bytes"`
	// GroupBySeconds is the floor: the snapshot's GROUP BY alone on the
	// source, output to /dev/null. Ratio is Seconds over it.
	GroupBySeconds float64 `json:"group_by_seconds"`
	Ratio          float64 `json:"ratio"`
}

// Quantiles of one latency, in seconds.
type Quantiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Peak is scenario 1: the engine under steady live load.
type Peak struct {
	Seconds       float64 `json:"seconds"`
	TargetTPS     float64 `json:"target_tps"`
	PaymentsPerS  float64 `json:"payments_per_second"`
	EventsPerS    float64 `json:"events_per_second"`
	EngineCores   float64 `json:"engine_cores"`
	EngineMaxRSS  int64   `json:"engine_max_rss_bytes"`
	WalsenderCore float64 `json:"walsender_cores"`
	// CommitToAggregate comes from the engine's histogram (bucket bounds
	// interpolated, as Prometheus' histogram_quantile does), from the end
	// of the generator's warm-up (WarmUp seconds after it started) to the
	// end; C2ABuckets and SinkFlush are over the same events.
	// CommitToAggregateWholeRun includes the warm-up.
	CommitToAggregate         Quantiles `json:"commit_to_aggregate_seconds"`
	CommitToAggregateWholeRun Quantiles `json:"commit_to_aggregate_whole_run_seconds"`
	WarmUp                    float64   `json:"warm_up_seconds"`
	// AlertLatency is from the end of the alert's minute to the webhook
	// receiving it, per firing notification.
	AlertLatency Quantiles    `json:"alert_latency_seconds"`
	AlertSamples []float64    `json:"alert_latency_samples"`
	LagSeconds   Quantiles    `json:"replication_lag_seconds"`
	LagBytes     Quantiles    `json:"replication_lag_bytes"`
	LagSeries    [][2]float64 `json:"replication_lag_series"` // (seconds since start, lag seconds)
	C2ABuckets   []Bucket     `json:"commit_to_aggregate_buckets"`
	// The ratios the targets are stated in, each over a floor measured in
	// the same run: the engine's CPU over the walsender's serving it;
	// commit → aggregate p50 and p99 over a flush interval plus the sink
	// transaction's p99 (SinkFlush, the engine's own histogram); alert
	// latency p99 over grace.
	CPURatio    float64   `json:"cpu_ratio"`
	SinkFlush   Quantiles `json:"sink_flush_seconds"`
	C2AFloor    float64   `json:"commit_to_aggregate_floor_seconds"`
	C2ARatio    float64   `json:"commit_to_aggregate_ratio"`
	C2AP50Ratio float64   `json:"commit_to_aggregate_p50_ratio"`
	Grace       float64   `json:"grace_seconds"`
	AlertRatio  float64   `json:"alert_latency_ratio"`
}

// Bucket is one histogram bucket: events with latency ≤ LE (and above the
// previous bucket's LE).
type Bucket struct {
	LE    float64 `json:"le"`
	Count float64 `json:"count"`
}

// Restart is scenario 4: SIGKILL under load to live again.
type Restart struct {
	Seconds []float64 `json:"seconds"`
	Median  float64   `json:"median"`
}

// CatchUp is scenario 2: a backlog applied from a stopped engine.
type CatchUp struct {
	Backlog    int64   `json:"backlog_changes"`
	Events     int64   `json:"events"`
	Seconds    float64 `json:"seconds"`
	EventsPerS float64 `json:"events_per_second"`
	Cores      float64 `json:"engine_cores"`
	// The floor: pg_recvlogical draining the same backlog from a slot of
	// the same kind, output thrown away. Ratio is EventsPerS over its rate.
	FloorSeconds    float64 `json:"pg_recvlogical_seconds"`
	FloorEventsPerS float64 `json:"pg_recvlogical_events_per_second"`
	Ratio           float64 `json:"ratio"`
}

// Baseline is scenario 5: the two rules as SQL over the source tables, once
// per minute, against riskwatch's cost at the source.
type Baseline struct {
	Runs          int       `json:"runs"`
	RunSeconds    []float64 `json:"run_seconds"`
	MedianSeconds float64   `json:"median_seconds"`
	SourceCPU     []float64 `json:"source_cpu_seconds"`
	MedianCPU     float64   `json:"median_source_cpu_seconds"`
	// RiskwatchCPU is riskwatch's source CPU per minute at the day's
	// average rate (AverageTPS payments/s): its walsender's plus its other
	// connections'. RiskwatchPeakCPU is the walsender's at the peak's rate.
	AverageTPS            float64 `json:"average_tps"`
	RiskwatchCPU          float64 `json:"riskwatch_source_cpu_seconds_per_minute"`
	RiskwatchWalsenderCPU float64 `json:"riskwatch_walsender_cpu_seconds_per_minute"`
	RiskwatchOtherCPU     float64 `json:"riskwatch_other_connections_cpu_seconds_per_minute"`
	RiskwatchPeakCPU      float64 `json:"riskwatch_source_cpu_seconds_per_minute_at_peak"`
	CPURatio              float64 `json:"cpu_ratio"`
	PeakCPURatio          float64 `json:"cpu_ratio_at_peak"`
	// The floors: at the same traffic, the walsender CPU per minute of
	// PostgreSQL's own pg_recvlogical (pgoutput, the engine's publication)
	// and pg_receivewal (physical), and the SQL job's CPU over each.
	FloorLogicalCPU    float64 `json:"pg_recvlogical_walsender_cpu_seconds_per_minute"`
	FloorPhysicalCPU   float64 `json:"pg_receivewal_walsender_cpu_seconds_per_minute"`
	FloorLogicalRatio  float64 `json:"cpu_ratio_pg_recvlogical"`
	FloorPhysicalRatio float64 `json:"cpu_ratio_pg_receivewal"`
	WALBytesPerMin     float64 `json:"wal_bytes_per_minute"`
	// Minute is the engine again at the same rate with minute delivery.
	Minute         MinuteDelivery `json:"minute_delivery"`
	AgreesWithRule bool           `json:"agrees_with_engine"`
	Note           string         `json:"note,omitempty"`
}

// MinuteDelivery is riskwatch's cost at the source and its alert latency
// with source.delivery: minute, at the day's average rate.
type MinuteDelivery struct {
	AverageTPS float64 `json:"average_tps"`
	// Drains is how many drains the measurement spans (one a minute).
	Drains int `json:"drains"`
	// CPU is per drain, which is per minute: DrainCPU, the drains'
	// walsenders (short-lived, so read from the postmaster's reaped
	// children), plus OtherCPU, riskwatch's other source connections.
	CPU      float64 `json:"source_cpu_seconds_per_minute"`
	DrainCPU float64 `json:"drain_cpu_seconds_per_minute"`
	OtherCPU float64 `json:"other_connections_cpu_seconds_per_minute"`
	CPURatio float64 `json:"cpu_ratio"`
	// DrainSeconds is each drain's duration (the engine's histogram).
	DrainSeconds Quantiles `json:"drain_seconds"`
	AlertLatency Quantiles `json:"alert_latency_seconds"`
	AlertSamples []float64 `json:"alert_latency_samples"`
}

// MariaDB is what a run with a MariaDB source measured beside the common
// figures, which keep their places above (Bootstrap.GroupBySeconds is the
// server's GROUP BY there too).
type MariaDB struct {
	// Server is how the private server ran.
	Server string `json:"server"`
	// The first start's other floor: the snapshot's SELECTs of the mapped
	// rows, read by a client and thrown away (the engine reads the same
	// rows and sums them itself). SelectRatio is Bootstrap.Seconds over it.
	SelectRows    int64   `json:"bootstrap_select_rows"`
	SelectSeconds float64 `json:"bootstrap_select_seconds"`
	SelectRatio   float64 `json:"bootstrap_select_ratio"`
	// DumpThreadCores is the CPU of the binlog dump thread serving the
	// engine at the peak.
	DumpThreadCores float64 `json:"peak_dump_thread_cores"`
	// The catch-up's floor: mariadb-binlog --read-from-remote-server
	// reading the backlog's binlog range (BacklogBytes) to /dev/null.
	BacklogBytes         int64   `json:"catch_up_binlog_bytes"`
	BinlogReadSeconds    float64 `json:"catch_up_mariadb_binlog_seconds"`
	BinlogReadEventsPerS float64 `json:"catch_up_mariadb_binlog_events_per_second"`
	// At the day's average rate, per minute: the CPU of the dump thread
	// serving the engine, of the one serving mariadb-binlog beside it
	// (the floor), and the binlog written.
	DumpThreadCPU      float64 `json:"average_dump_thread_cpu_seconds_per_minute"`
	FloorDumpThreadCPU float64 `json:"average_mariadb_binlog_dump_thread_cpu_seconds_per_minute"`
	FloorRatio         float64 `json:"cpu_ratio_mariadb_binlog"`
	BinlogBytesPerMin  float64 `json:"binlog_bytes_per_minute"`
}
