package strom

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnVersions are the broker's two transaction protocols as franz-go speaks them. franz-go
// uses transactions v2 (KIP-890 part 2: Produce 12 without AddPartitionsToTxn, TxnOffsetCommit
// 5 without AddOffsetsToTxn, an epoch bump at every EndTxn) when ApiVersions finalizes the
// `transaction.version` feature at 2, Strom's default; at 1 it stays on v1.
var txnVersions = []struct {
	name     string
	settings map[string]string
	// bumps: whether the producer epoch grows at each commit or abort (v2 only).
	bumps bool
}{
	{"v2", map[string]string{"group.initial.rebalance.delay.ms": "0"}, true},
	{"v1", map[string]string{"group.initial.rebalance.delay.ms": "0", "transaction.version": "1"}, false},
}

// A transactional producer commits, aborts and commits again: a read_committed consumer sees
// the committed records only, a read_uncommitted one sees all of them, and the offsets show
// one control record (the marker) after each transaction in each partition.
func TestTransactionCommitAndAbort(t *testing.T) {
	for _, version := range txnVersions {
		t.Run(version.name, func(t *testing.T) {
			b := startBroker(t, version.settings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			txnID := topicName(t, "txn")
			createTopic(t, adm, topic, 2, nil)
			producer := newClient(t, b,
				kgo.TransactionalID(txnID),
				kgo.TransactionTimeout(30*time.Second),
				kgo.DefaultProduceTopic(topic),
				kgo.RecordPartitioner(kgo.ManualPartitioner()),
			)
			ctx := testContext(t)
			epochs := map[string]int16{}
			for _, txn := range []struct {
				label  string
				commit kgo.TransactionEndTry
			}{{"a", kgo.TryCommit}, {"b", kgo.TryAbort}, {"c", kgo.TryCommit}} {
				if err := producer.BeginTransaction(); err != nil {
					t.Fatalf("begin %s: %v", txn.label, err)
				}
				var rs []*kgo.Record
				for i := 0; i < 6; i++ {
					rs = append(rs, &kgo.Record{Partition: int32(i % 2), Value: []byte(fmt.Sprintf("%s-%d", txn.label, i))})
				}
				produceSync(t, producer, rs...)
				epochs[txn.label] = rs[0].ProducerEpoch
				if err := producer.EndTransaction(ctx, txn.commit); err != nil {
					t.Fatalf("end %s (commit %v): %v", txn.label, txn.commit, err)
				}
			}
			if version.bumps {
				if epochs["b"] != epochs["a"]+1 || epochs["c"] != epochs["a"]+2 {
					t.Fatalf("producer epochs %v: transactions v2 bumps the epoch at every end", epochs)
				}
			} else if epochs["a"] != epochs["b"] || epochs["b"] != epochs["c"] {
				t.Fatalf("producer epochs %v: transactions v1 keeps the epoch", epochs)
			}

			// A sentinel after the transactions in each partition, from a plain producer.
			plain := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			produceSync(t, plain, &kgo.Record{Partition: 0, Value: []byte("end")}, &kgo.Record{Partition: 1, Value: []byte("end")})

			readAll := func(isolation kgo.IsolationLevel) []*kgo.Record {
				c := newClient(t, b, kgo.FetchIsolationLevel(isolation), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
					topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart()},
				}))
				rs := pollUntil(t, c, waitTimeout, "both sentinels", func(rs []*kgo.Record) bool {
					n := 0
					for _, r := range rs {
						if string(r.Value) == "end" {
							n++
						}
					}
					return n == 2
				})
				sort.Slice(rs, func(i, j int) bool {
					return rs[i].Partition < rs[j].Partition || rs[i].Partition == rs[j].Partition && rs[i].Offset < rs[j].Offset
				})
				return rs
			}
			describe := func(rs []*kgo.Record) string {
				var parts []string
				for _, r := range rs {
					parts = append(parts, fmt.Sprintf("%d/%d=%s", r.Partition, r.Offset, r.Value))
				}
				return strings.Join(parts, " ")
			}
			// Each transaction put 3 records in each partition and then a marker.
			committed := describe(readAll(kgo.ReadCommitted()))
			wantCommitted := "0/0=a-0 0/1=a-2 0/2=a-4 0/8=c-0 0/9=c-2 0/10=c-4 0/12=end " +
				"1/0=a-1 1/1=a-3 1/2=a-5 1/8=c-1 1/9=c-3 1/10=c-5 1/12=end"
			if committed != wantCommitted {
				t.Fatalf("read_committed:\n got %s\nwant %s", committed, wantCommitted)
			}
			uncommitted := describe(readAll(kgo.ReadUncommitted()))
			wantUncommitted := "0/0=a-0 0/1=a-2 0/2=a-4 0/4=b-0 0/5=b-2 0/6=b-4 0/8=c-0 0/9=c-2 0/10=c-4 0/12=end " +
				"1/0=a-1 1/1=a-3 1/2=a-5 1/4=b-1 1/5=b-3 1/6=b-5 1/8=c-1 1/9=c-3 1/10=c-5 1/12=end"
			if uncommitted != wantUncommitted {
				t.Fatalf("read_uncommitted:\n got %s\nwant %s", uncommitted, wantUncommitted)
			}

			// The coordinator's view: the id's last transaction committed, nothing open.
			described, err := adm.DescribeTransactions(ctx, txnID)
			if err != nil {
				t.Fatal(err)
			}
			d := described[txnID]
			if d.Err != nil || d.State != "CompleteCommit" || d.ProducerEpoch < epochs["c"] || d.TimeoutMillis != 30000 {
				t.Fatalf("described transaction %+v, want CompleteCommit with a 30 s timeout", d)
			}
			listed, err := adm.ListTransactions(ctx, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if l, ok := listed[txnID]; !ok || l.ProducerID != d.ProducerID {
				t.Fatalf("listed transactions %+v, want %s with producer id %d", listed, txnID, d.ProducerID)
			}
		})
	}
}

// An open transaction holds the last stable offset at its first record: read_committed
// ListOffsets and consumers stop there, DescribeTransactions and DescribeProducers show it, and
// its commit releases the records.
func TestOpenTransactionHoldsLastStableOffset(t *testing.T) {
	for _, version := range txnVersions {
		t.Run(version.name, func(t *testing.T) {
			b := startBroker(t, version.settings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			txnID := topicName(t, "txn")
			createTopic(t, adm, topic, 1, nil)
			ctx := testContext(t)
			plain := newClient(t, b, kgo.DefaultProduceTopic(topic))
			produceSync(t, plain, kgo.StringRecord("before-0"), kgo.StringRecord("before-1"))

			producer := newClient(t, b, kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic))
			if err := producer.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			open := []*kgo.Record{kgo.StringRecord("open-0"), kgo.StringRecord("open-1")}
			produceSync(t, producer, open...)
			if open[0].Offset != 2 {
				t.Fatalf("first transactional record at %d, want 2", open[0].Offset)
			}
			produceSync(t, plain, kgo.StringRecord("after"))

			lso, err := adm.ListCommittedOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			hw, err := adm.ListEndOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			if o, _ := lso.Lookup(topic, 0); o.Offset != 2 {
				t.Fatalf("read_committed end offset %+v, want 2 (the open transaction's start)", o)
			}
			if o, _ := hw.Lookup(topic, 0); o.Offset != 5 {
				t.Fatalf("read_uncommitted end offset %+v, want 5", o)
			}
			described, err := adm.DescribeTransactions(ctx, txnID)
			if err != nil {
				t.Fatal(err)
			}
			if d := described[txnID]; d.State != "Ongoing" || fmt.Sprint(d.Topics) != fmt.Sprint(kadm.TopicsSet{topic: {0: {}}}) {
				t.Fatalf("described %+v, want Ongoing on %s/0", d, topic)
			}
			producers, err := adm.DescribeProducers(ctx, kadm.TopicsSet{topic: {0: {}}})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range producers[topic].Partitions[0].ActiveProducers {
				if p.ProducerID == open[0].ProducerID {
					found = true
					if p.CurrentTxnStartOffset != 2 {
						t.Fatalf("producer %+v: transaction start %d, want 2", p, p.CurrentTxnStartOffset)
					}
				}
			}
			if !found {
				t.Fatalf("transactional producer %d not among %+v", open[0].ProducerID, producers[topic].Partitions[0].ActiveProducers)
			}

			// read_committed reads up to the open transaction and no further.
			reader := newClient(t, b, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
			got := pollCount(t, reader, 2)
			if fmt.Sprint(values(got)) != "[before-0 before-1]" {
				t.Fatalf("read_committed before the commit: %v", values(got))
			}
			if err := producer.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
			got = pollCount(t, reader, 3)
			if fmt.Sprint(values(got)) != "[open-0 open-1 after]" || got[2].Offset != 4 {
				t.Fatalf("read_committed after the commit: %v", values(got))
			}
			lso, err = adm.ListCommittedOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			if o, _ := lso.Lookup(topic, 0); o.Offset != 6 {
				t.Fatalf("read_committed end offset after the commit %+v, want 6 (after the marker)", o)
			}
		})
	}
}

// A second producer with the same transactional id fences the first: the first's open
// transaction is aborted and its commit refused; the second's records are committed.
func TestTransactionalIDFencesZombie(t *testing.T) {
	for _, version := range txnVersions {
		t.Run(version.name, func(t *testing.T) {
			b := startBroker(t, version.settings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			txnID := topicName(t, "txn")
			createTopic(t, adm, topic, 1, nil)
			ctx := testContext(t)
			txnOpts := []kgo.Opt{kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic)}

			zombie := newClient(t, b, txnOpts...)
			if err := zombie.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			produceSync(t, zombie, kgo.StringRecord("zombie"))

			successor := newClient(t, b, txnOpts...)
			if err := successor.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			mine := kgo.StringRecord("successor")
			produceSync(t, successor, mine)
			if err := successor.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatalf("successor commit: %v", err)
			}

			err := zombie.EndTransaction(ctx, kgo.TryCommit)
			// franz-go sends EndTxn 2 or later (5 for transactions v2), which know PRODUCER_FENCED.
			if !errors.Is(err, kerr.ProducerFenced) {
				t.Fatalf("zombie commit: %v, want PRODUCER_FENCED", err)
			}

			plain := newClient(t, b, kgo.DefaultProduceTopic(topic))
			produceSync(t, plain, kgo.StringRecord("end"))
			reader := newClient(t, b, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
			got := pollThrough(t, reader, "end")
			if fmt.Sprint(values(got)) != "[successor end]" {
				t.Fatalf("read_committed: %v, want [successor end]", values(got))
			}
		})
	}
}

// Exactly-once consume-transform-produce with a GroupTransactSession: an aborted transaction
// rewinds the session to the group's committed offsets, a committed one moves them, and the
// output holds every input record's transformation exactly once.
func TestGroupTransactSessionExactlyOnce(t *testing.T) {
	for _, version := range txnVersions {
		t.Run(version.name, func(t *testing.T) {
			b := startBroker(t, version.settings)
			adm := newAdmin(t, b)
			in := topicName(t, "in")
			out := topicName(t, "out")
			group := topicName(t, "g")
			createTopic(t, adm, in, 2, nil)
			createTopic(t, adm, out, 1, nil)
			const n = 40
			source := newClient(t, b, kgo.DefaultProduceTopic(in), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			var rs []*kgo.Record
			for i := 0; i < n; i++ {
				rs = append(rs, &kgo.Record{Partition: int32(i % 2), Value: []byte(fmt.Sprintf("in-%02d", i))})
			}
			produceSync(t, source, rs...)

			session, err := kgo.NewGroupTransactSession(clientOpts(b,
				kgo.TransactionalID(topicName(t, "txn")),
				kgo.ConsumerGroup(group),
				kgo.ConsumeTopics(in),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.DefaultProduceTopic(out),
				kgo.HeartbeatInterval(500*time.Millisecond),
				kgo.SessionTimeout(6*time.Second),
			)...)
			if err != nil {
				t.Fatal(err)
			}
			defer session.Close()

			ctx := testContext(t)
			aborted, committedInputs := 0, map[string]bool{}
			deadline := time.Now().Add(waitTimeout)
			for len(committedInputs) < n {
				if time.Now().After(deadline) {
					t.Fatalf("timed out: %d of %d inputs committed", len(committedInputs), n)
				}
				pollCtx, cancel := context.WithTimeout(ctx, time.Second)
				fetches := session.PollFetches(pollCtx)
				cancel()
				for _, e := range fetches.Errors() {
					if !errors.Is(e.Err, context.DeadlineExceeded) {
						t.Fatalf("poll: %v", e.Err)
					}
				}
				batch := fetches.Records()
				if len(batch) == 0 {
					continue
				}
				if err := session.Begin(); err != nil {
					t.Fatal(err)
				}
				// Written before the end, so an aborted transaction leaves its records (and an
				// abort marker) in the log rather than dropping them unsent.
				var outs []*kgo.Record
				for _, r := range batch {
					outs = append(outs, &kgo.Record{Value: []byte("out-" + string(r.Value))})
				}
				if err := session.ProduceSync(ctx, outs...).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
				// The first transaction is aborted on purpose: its inputs must come again.
				try := kgo.TryCommit
				if aborted == 0 {
					try = kgo.TryAbort
				}
				committed, err := session.End(ctx, try)
				if err != nil {
					t.Fatalf("end (commit %v): %v", try, err)
				}
				if try == kgo.TryAbort {
					if committed {
						t.Fatal("an abort reported as committed")
					}
					aborted += len(batch)
					continue
				}
				if !committed {
					t.Fatal("a lone member's commit did not commit")
				}
				for _, r := range batch {
					if committedInputs[string(r.Value)] {
						t.Fatalf("input %s committed twice", r.Value)
					}
					committedInputs[string(r.Value)] = true
				}
			}

			offsets := map[int32]int64{0: fetchCommitted(t, adm, group, in, 0), 1: fetchCommitted(t, adm, group, in, 1)}
			if offsets[0] != n/2 || offsets[1] != n/2 {
				t.Fatalf("group offsets %v, want %d on both partitions", offsets, n/2)
			}

			plain := newClient(t, b, kgo.DefaultProduceTopic(out))
			produceSync(t, plain, kgo.StringRecord("end"))
			reader := newClient(t, b, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{out: {0: kgo.NewOffset().AtStart()}}))
			got := values(pollThrough(t, reader, "end"))
			got = got[:len(got)-1]
			sort.Strings(got)
			var want []string
			for i := 0; i < n; i++ {
				want = append(want, fmt.Sprintf("out-in-%02d", i))
			}
			if !equalStrings(got, want) {
				t.Fatalf("committed output %v, want each of %v once", got, want)
			}
			everything := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{out: {0: kgo.NewOffset().AtStart()}}))
			if all := pollThrough(t, everything, "end"); len(all) != n+aborted+1 {
				t.Fatalf("read_uncommitted output has %d records, want %d committed + %d aborted + end", len(all), n, aborted)
			}
		})
	}
}

// A transaction left open past its transaction.timeout.ms is aborted by the broker: its
// records never become visible, and the producer's commit is refused.
func TestTransactionTimeoutAborts(t *testing.T) {
	for _, version := range txnVersions {
		t.Run(version.name, func(t *testing.T) {
			b := startBroker(t, version.settings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			txnID := topicName(t, "txn")
			createTopic(t, adm, topic, 1, nil)
			ctx := testContext(t)
			producer := newClient(t, b, kgo.TransactionalID(txnID), kgo.TransactionTimeout(2*time.Second), kgo.DefaultProduceTopic(topic))
			if err := producer.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			produceSync(t, producer, kgo.StringRecord("abandoned"))
			waitUntil(t, waitTimeout, "the broker aborting the transaction", func() (bool, error) {
				described, err := adm.DescribeTransactions(ctx, txnID)
				if err != nil {
					return false, err
				}
				d := described[txnID]
				return d.State == "CompleteAbort", fmt.Errorf("state %s", d.State)
			})
			if err := producer.EndTransaction(ctx, kgo.TryCommit); err == nil {
				t.Fatal("commit of a transaction the broker aborted succeeded")
			}
			plain := newClient(t, b, kgo.DefaultProduceTopic(topic))
			produceSync(t, plain, kgo.StringRecord("end"))
			reader := newClient(t, b, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
			got := pollThrough(t, reader, "end")
			if fmt.Sprint(values(got)) != "[end]" {
				t.Fatalf("read_committed: %v, want [end]", values(got))
			}
		})
	}
}
