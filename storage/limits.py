"""Every bound in Squall, in one place.

Names carry their unit last. A limit that a client can hit maps to an S3 error at the
edge (the gateway); a limit that protects a queue maps to ``Overloaded`` -> ``SlowDown``.
"""

from __future__ import annotations

# --- S3 object model -------------------------------------------------------------------
key_bytes_max = 1024  # AWS: object key names are at most 1024 bytes of UTF-8
bucket_name_length_min = 3
bucket_name_length_max = 63
user_metadata_bytes_max = 2 * 1024  # AWS: user-defined metadata, names + values, 2 KB
object_size_bytes_max = 5 * 1024**3  # AWS: a single PUT is at most 5 GiB
buckets_per_owner_max = 10_000
list_buckets_max = 10_000  # AWS: ListBuckets max-buckets is 1..10000
list_keys_max = 1000  # ListObjects/ListObjectsV2/ListObjectVersions max-keys clamp
delete_objects_keys_max = 1000  # DeleteObjects: at most 1000 keys per request
parts_per_upload_max = 10_000  # AWS: part numbers are 1..10000
part_size_bytes_max = 5 * 1024**3  # AWS: one part is at most 5 GiB
part_size_bytes_min = 5 * 1024**2  # AWS: every part but the last is at least 5 MiB
multipart_object_size_bytes_max = 5 * 1024**4  # AWS: a multipart object is at most 5 TiB
list_parts_max = 1000  # ListParts max-parts clamp
object_attributes_parts_max = 1000  # GetObjectAttributes x-amz-max-parts clamp (AWS default)
list_uploads_max = 1000  # ListMultipartUploads max-uploads clamp
object_tags_max = 10  # AWS: at most 10 tags per object version
bucket_tags_max = 50  # AWS: at most 50 tags per bucket
tag_key_chars_max = 128  # AWS: a tag key is 1..128 Unicode characters
tag_value_chars_max = 256  # AWS: a tag value is 0..256 Unicode characters
object_lock_default_retention_days_max = 36_500  # AWS: DefaultRetention Days, 1..36500
object_lock_default_retention_years_max = 100  # AWS: DefaultRetention Years, 1..100
object_lock_day_ms = 24 * 3600 * 1000  # one retention day (AWS counts whole 24-hour days)
object_lock_year_days = 365  # one retention year, in days (what AWS and RGW count)

# --- storage engine --------------------------------------------------------------------
chunk_size_bytes = 1024 * 1024  # bodies are stored in chunks of this size
lmdb_map_size_bytes = 1 << 40  # address space reserved for the memory map (sparse)
lmdb_readers_max = 1024  # concurrent read transactions (open GET streams + lookups)
group_commit_writes_max = 1000  # writes that may share one LMDB transaction
group_commit_bytes_max = 64 * 1024 * 1024  # staged bytes that may share one transaction
write_queue_length_max = 4096  # pending writer operations; more -> Overloaded
read_streams_max = 512  # concurrently open GET body streams; more -> Overloaded
snapshots_concurrent_max = 1  # backups streamed by a node at once; more -> Overloaded
upload_chunks_in_flight_max = 4  # staged chunks of one upload awaiting the writer
staging_gc_deletes_per_txn_max = 10_000  # start-up cleanup of crashed uploads, per txn
staging_collect_blobs_max = 1000  # staged blobs one replicated collection looks at
# A cluster's shard leader drops bodies staged longer ago than this (abandoned uploads),
# every staging_collect_period_seconds, through the shard's log.
staging_age_ms_max = 24 * 3600 * 1000
staging_collect_period_seconds = 600.0
change_counters_max = 100_000  # (bucket, scope) change counters kept; beyond, all reset at once
bucket_records_decoded_max = 10_000  # decoded bucket records kept per engine; beyond, all dropped

# --- network transports (storage/transport/frames.py, tcp.py, rdma.py) ------------------
# A frame's control message (msgpack) is bounded per direction. Requests are small: the
# largest is a configuration document (gateway-bounded to 1 MiB) or a CompleteMultipartUpload
# list of 10,000 parts (~1 MiB). Replies carry listing pages (1000 entries of keys up to
# 1 KiB), 10,000 buckets, an outbox page, or a version with its inline body.
transport_request_control_bytes_max = 4 * 1024 * 1024
transport_response_control_bytes_max = 16 * 1024 * 1024
transport_payload_bytes_max = chunk_size_bytes  # one frame's payload: at most one body chunk
# Per connection, headers and small frames are received into one staging buffer of this
# size; a section (control or payload) that is not complete in it gets its own buffer of
# exactly its announced size, into which the rest is received directly.
transport_receive_buffer_bytes = 32 * 1024
transport_calls_in_flight_per_connection_max = 256  # client: more unary calls wait their turn
# Node: the control + payload bytes of one connection's requests being handled; beyond it,
# the node stops reading that connection (TCP pushes back on the client) until some finish.
transport_request_bytes_in_flight_max = 256 * 1024 * 1024
transport_streams_per_connection_max = read_streams_max + snapshots_concurrent_max
transport_stream_window_pieces = 4  # pieces a node may send ahead of a stream's reader
# A stream whose reader grants no credit (or whose node sends nothing) for this long is
# ended with Overloaded on the node and NodeUnavailable on the client: its slot (and read
# transaction) comes back.
transport_stream_idle_ms_max = 120_000
transport_connect_timeout_ms = 5_000
# A unary call (connect, wait for a slot, send, answer) that takes longer fails with
# NodeUnavailable. Longer than the longest legitimate call: outbox_wait (30 s) and a judged
# commit (trigger_judge_timeout_ms, 30 s, then the commit itself).
transport_call_timeout_ms = 60_000
transport_node_connections_max = 1024  # connections one node server accepts at once
transport_codec_nesting_depth_max = 32  # records and tuples inside one another, on decode
# RDMA (storage/transport/rdma.py; untested on hardware): registered memory per connection
# and end, in slots of transport_payload_bytes_max (one chunk): what a peer may RDMA-write
# into (receive) and what this end copies a payload into before writing it (send).
rdma_receive_slots_per_connection = 64  # 64 MiB: 16 streams' windows, or 64 staged chunks
rdma_send_slots_per_connection = 16
rdma_work_requests_max = 64  # RDMA writes outstanding on one queue pair
rdma_completion_poll_interval_us = 50  # the completion queue is polled this often while busy

# --- lifecycle sweeper (storage/lifecycle.py) ------------------------------------------
lifecycle_rules_max = 1000  # AWS: a lifecycle configuration has at most 1000 rules
lifecycle_rules_cached_buckets_max = 10_000  # buckets whose rules the gateway keeps (x-amz-expiration)
lifecycle_sweep_period_seconds = 3600.0  # one pass over every bucket with rules, this often
lifecycle_deletes_per_second_max = 1000  # expiry deletes, all buckets together
lifecycle_deletes_per_txn_max = 100  # expiry deletes sharing one writer operation
lifecycle_scan_versions_per_page_max = 1000  # versions read in one read transaction
lifecycle_scan_uploads_per_page_max = 1000  # multipart uploads read in one read transaction
# A sweep that finds the notification outbox (or the write queue) full waits, then retries:
lifecycle_overloaded_retry_delay_ms_min = 100  # first wait (doubles per retry)
lifecycle_overloaded_retry_delay_ms_max = 10_000  # wait ceiling while the targets catch up
lifecycle_overloaded_log_period_seconds = 30.0  # at most one "sweep paused" warning per period

# --- gateway ---------------------------------------------------------------------------
connections_max = 2048  # open HTTP connections + requests in flight; more -> 503 at once
keep_alive_idle_seconds_max = 30  # an idle keep-alive connection is closed after this
request_header_bytes_max = 16 * 1024  # all request headers together (uvicorn h11 limit too)
request_xml_body_bytes_max = 1024 * 1024  # any XML request body (DeleteObjects, configs)
presigned_expiry_seconds_max = 7 * 24 * 3600  # AWS: presigned URLs live at most 7 days
signing_keys_cached_max = 1024  # derived SigV4 keys kept (credential x day x region)
xml_dates_cached_max = 4096  # formatted seconds of XML timestamps kept (listings)
auth_fields_cached_max = 1024  # parsed SigV4 fields kept, per parser (credential, date ...)
request_time_skew_seconds_max = 15 * 60  # AWS: RequestTimeTooSkewed beyond 15 minutes
aws_chunk_header_bytes_max = 4096  # one aws-chunked chunk header line
aws_chunk_size_bytes_max = 16 * 1024 * 1024  # one aws-chunked chunk's payload
aws_trailer_bytes_max = 16 * 1024  # all aws-chunked trailers together
cors_config_bytes_max = 64 * 1024  # AWS: a CORS configuration is at most 64 KB
cors_rules_max = 100  # AWS: a CORS configuration has at most 100 rules
cors_parsed_configs_cached_max = 1024  # parsed CORS configurations the gateway keeps
bucket_policy_bytes_max = 20 * 1024  # AWS: a bucket policy is at most 20 KB
bucket_policies_cached_max = 10_000  # parsed bucket policies the gateway keeps; beyond, all dropped
bucket_configs_cached_bytes_max = 16 * 1024 * 1024  # storage client's cached bucket documents
policy_principals_cached_max = 1024  # policy principals built from access keys, kept
get_inline_body_bytes_max = 64 * 1024  # a GET body this small is read with its metadata
# POST Object (browser form uploads, gateway/s3/post_object.py): the fields before the
# file are held in memory, so they are bounded one by one, in count and all together.
post_form_fields_bytes_max = 20 * 1024  # AWS: fields before the file, together, at most 20 KB
post_form_field_bytes_max = 20 * 1024  # one field's value (the policy is the largest)
post_form_fields_max = 100  # fields before the file
post_form_part_header_bytes_max = 8 * 1024  # the header lines of one form part
post_form_preamble_bytes_max = 1024  # bytes allowed before the first boundary
post_form_trailing_bytes_max = 64 * 1024  # read and ignored after the file; more -> close
post_policy_conditions_max = 1000  # conditions in one POST policy document
response_coalesce_bytes_max = 64 * 1024  # a response write this small waits to join the next
# GET /_squall/health (gateway/health.py): storage must answer its cheap call (a read
# transaction per shard, microseconds when healthy) within this, else 503. Shorter than the
# Helm chart's probe timeout (3 s), so a probe gets our answer rather than its own timeout.
health_storage_timeout_ms = 1000

# --- users and ACLs (gateway/users.py, gateway/s3/acl.py, gateway/authz.py) ------------
users_max = 1000  # stored users besides root (each is read into memory: the secret lookup)
user_access_key_chars_min = 3  # an access key is 3..128 of [A-Za-z0-9]
user_access_key_chars_max = 128
user_secret_key_chars_min = 8  # a shorter secret is refused (guessable)
user_secret_key_chars_max = 128  # AWS secret keys are 40; bounded so a record stays small
user_display_name_chars_max = 128
user_record_bytes_max = 4 * 1024  # one stored user document; also the admin PUT body
acl_grants_max = 100  # AWS: an access control list has at most 100 grants
acl_document_bytes_max = 64 * 1024  # a stored ACL (100 grants of long ids fit easily)
acls_parsed_cached_max = 4096  # parsed ACL documents the gateway keeps (per distinct bytes)

# --- pre-commit functions (triggers) ---------------------------------------------------
function_definition_bytes_max = 64 * 1024  # one function definition document
functions_max = 1000  # registered functions
function_name_length_max = 64
trigger_chain_depth_max = 4  # functions one write may pass through (chain actions)
trigger_judge_timeout_ms = 30_000  # a judgement that takes longer -> Overloaded (SlowDown)
trigger_input_bytes_max = 64 * 1024 * 1024  # bodies larger than this are not decoded
trigger_batch_size_max = 256  # clamp of a function's max_batch_size
trigger_queue_delay_ms_max = 1000  # clamp of a function's max_queue_delay_ms
trigger_queue_length_max = 1024  # clamp of a function's queue_length_max (full -> SlowDown)
trigger_concurrent_batches_max = 16  # clamp of a function's max_concurrent_batches
# Batches of all functions running at once (one inference thread each): the process's
# usable cores, at most this many (docs/triggers.md, "Concurrency").
trigger_inference_threads_max = 32
# A batch measured to take at most this long, with its bodies at most this large, runs on
# the event loop when no other batch runs (no thread hop; triggers/functions.py). It
# stalls every other request on the loop meanwhile: 2 ms is ~8 small GETs' worth of CPU,
# and a small model's batch (shapes: ~0.7-1 ms) still fits.
trigger_inline_batch_ms_max = 2.0
trigger_inline_body_bytes_max = 256 * 1024
# Retired function versions (definition replaced or removed) still finishing their
# batches; retiring one more waits for the oldest (triggers/functions.py, Registry).
trigger_retired_functions_max = 8
trigger_lookups_cached_max = 4096  # per cache: notification configs, definitions, model refs
model_object_bytes_max = 512 * 1024 * 1024  # a model object larger than this is refused
model_cache_bytes_max = 1024 * 1024 * 1024  # loaded models kept (LRU beyond this budget)
model_archive_members_max = 10_000  # files + directories in a SavedModel archive (.tar/.zip)
model_archive_bytes_max = 2 * 1024**3  # bytes a SavedModel archive may unpack to, all files
litert_threads_default = 2  # a LiteRT interpreter's CPU threads unless litert_threads says
litert_threads_max = 16  # clamp of a function's litert_threads
litert_interpreters_per_model_max = 4  # LiteRT interpreters of one model version (pooled)
litert_conversions_concurrent_max = 1  # background LiteRT conversions at once (each holds
#                                        the model's graph twice, and they are CPU-bound)
# squall serve --gpu-memory-limit-mib: the logical GPU device TensorFlow gets (per GPU).
# Below 256 MiB cuDNN/cuBLAS workspaces alone do not fit; above 1 TiB is no GPU made yet.
tensorflow_gpu_memory_limit_mib_min = 256
tensorflow_gpu_memory_limit_mib_max = 1024 * 1024

# --- post-commit notifications (outbox: storage/engine/outbox.py; delivery: triggers/events.py)
outbox_entries_max = 1_000_000  # undelivered events kept; a write that would add more -> SlowDown
outbox_read_events_max = 1000  # events one outbox_read returns
outbox_scan_entries_max = 10_000  # outbox entries one outbox_read looks at (filtering by target)
outbox_ack_events_max = 1000  # sequence numbers one outbox_ack removes
event_window_per_target_max = 1024  # events a target's worker holds between read and ack
event_deliveries_in_flight_per_target_max = 16  # concurrent POSTs to one webhook
event_delivery_timeout_ms = 10_000  # one POST (connect + answer); longer counts as a failure
event_retry_delay_ms_min = 100  # first backoff after a failed delivery (doubles per failure)
event_retry_delay_ms_max = 30_000  # backoff ceiling: a target down for hours is retried this often
event_outbox_poll_interval_ms = 50  # an idle worker looks for new events this often
outbox_wait_ms_max = 30_000  # longest outbox_wait (a commit that adds events wakes it)
event_outbox_log_period_seconds = 30.0  # depth log line period while events are pending
webhooks_max = 100  # --webhook targets
metrics_token_chars_min = 16  # squall serve --metrics-token-file: a guessable token is refused

# --- membership: the view agreed through Raft (storage/membership/agreement.py)
membership_propose_timeout_ms = 5_000  # a view proposal not agreed by then -> NoQuorum
membership_commands_queued_max = 64  # proposals waiting in pysyncobj's queue; more -> NoQuorum

# --- shard replication (storage/replication/core.py) -----------------------------------
# The core's clock is abstract ticks; the driver ticks it every replication_tick_ms.
# Entries are the shard log's control records (a body travels apart, as staged chunks), so
# the per-message bounds count entries first and bytes second.
replication_tick_ms = 10  # one tick of the replication core's clock, in driver time
replication_entries_in_flight_max = 256  # log entries sent to one peer and not yet acknowledged
replication_entries_per_message_max = 64  # log entries in one Append / FetchReply message
replication_message_bytes_max = 1024 * 1024  # entry bytes in one message (one entry always fits)
# Applied entries a node keeps in its log for peers that fall behind; past this, the oldest
# half is trimmed, and a peer that needs a trimmed entry is told to fetch a snapshot.
replication_log_entries_max = 10_000
replication_pending_writes_max = 1024  # client writes a leader holds unacknowledged; more -> Overloaded
replication_pending_bytes_max = 64 * 1024 * 1024  # their entry bytes, all together; more -> Overloaded
replication_learners_max = 8  # outsiders (nodes outside the view) one leader streams to at once
replication_retransmit_ticks = 20  # silence after which a request or unacknowledged send is repeated
replication_heartbeat_ticks = 5  # an idle leader sends an empty Append (the commit index) this often
replication_learner_idle_ticks_max = 200  # a learner silent this long is forgotten
replication_caught_up_report_ticks = 50  # a caught-up learner is reported again this often
replication_snapshot_wait_ticks = 500  # a peer told to fetch a snapshot is left alone this long

# --- membership (storage/membership/core.py) ------------------------------------------
membership_nodes_max = 1024  # nodes one membership group tracks

# --- a replicated cluster (storage/cluster_config.py, storage/replication/driver.py) ----
cluster_nodes_max = 64  # nodes one cluster file may name
cluster_shards_max = 256  # shards one cluster may have
cluster_secret_chars_min = 16  # a shorter cluster secret is refused
membership_tick_ms = 100  # the failure detector's tick (heartbeats are sent this often)
# The membership decider's failure detector (storage/membership/core.py) ticks this often
# on a node; the simulation chooses its own suspicion time in its ticks.
membership_suspect_after_ticks = 10  # silent this many ticks -> suspected (1 s)
# A shard leader serves reads only while it heard from every member this recently: less
# than the suspicion time above, so it stops before a view without it can be agreed.
replication_read_lease_ms = 500
assert replication_read_lease_ms < membership_suspect_after_ticks * membership_tick_ms
replication_driver_events_max = 4096  # ticks, peer messages and client writes queued per shard
replication_write_timeout_ms = 10_000  # a client write not acknowledged by then -> SlowDown
replication_sends_in_flight_max = 64  # replication messages in flight to one peer; more dropped
membership_ping_timeout_ms = 500  # a heartbeat not answered by then counts as silence
cluster_retry_ms = 15_000  # the gateway retries a request on a shard's new leader this long
cluster_retry_backoff_ms = 100  # between two such retries
membership_caught_up_reports_max = 256  # caught-up reports kept per epoch in the agreed state
