#pragma once

#include "Azure/HttpClient.h"
#include "Azure/StowResponse.h"
#include "Common/Clock.h"
#include "Common/Logger.h"
#include "Common/ThreadPriority.h"
#include "Sync/InstanceFiles.h"
#include "Sync/OrthancGateway.h"
#include "Sync/Outbox.h"
#include "Sync/RequestStatistics.h"
#include "Sync/Configuration.h"
#include "Sync/RetryPolicy.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace AzureDicom
{
// The service's own limit on a STOW-RS request (2 GB in its open-source code): an instance
// larger than this can never be stored, so it is Failed before a byte is sent.
const uint64_t SERVICE_MAX_REQUEST_BYTES = 2ull * 1024 * 1024 * 1024;


// Posts one STOW-RS body to the destination. Each worker owns one, with its own connection.
class IStowSender
{
public:
  virtual ~IStowSender() = default;

  // Returns the response, whatever its status. Throws Exception(NetworkError) when no response
  // came, Exception(Unauthorized) when no token could be obtained.
  virtual HttpResponse Post(const std::string& body, const std::string& contentType) = 0;

  // Sends the body with PUT to the same URL: the service's upsert (API v2).
  virtual HttpResponse Put(const std::string& body, const std::string& contentType) = 0;

  // Sends a body held in pieces with POST, or with PUT for an upsert. The default joins the
  // pieces and calls Post() or Put(); a sender that can stream them overrides it.
  virtual HttpResponse Send(const RequestBody& body, const std::string& contentType, bool upsert)
  {
    const std::string joined = body.ToString();
    return upsert ? Put(joined, contentType) : Post(joined, contentType);
  }

  // Sends DICOMweb DELETE to url. Throws as Post() does.
  virtual HttpResponse Delete(const std::string& url) = 0;

  // Forgets the cached token after the service rejected it.
  virtual void InvalidateToken() = 0;

  // Makes a request in progress fail soon after *flag becomes true (see HttpClient).
  virtual void SetAbortFlag(const std::atomic<bool>* /* flag */)
  {
  }
};


struct DispatcherSettings
{
  unsigned int workers = 4;
  unsigned int maxInstancesPerRequest = 20;
  uint64_t maxRequestBytes = 64ull * 1024 * 1024;
  unsigned int leaseSeconds = 360;
  RetrySettings retry;
  std::string destination;  // the STOW-RS URL, recorded with each item and in the logs
  Destination target;       // the same destination, recorded with each confirmed item
  ConflictPolicy onConflict = ConflictPolicy::Keep;
  std::string principal;    // the client ID the tokens are for, named in a 403 status
};


struct DispatcherStatus
{
  std::string state;  // "Running", "Paused" (by an administrator) or "Waiting" (backoff)
  bool paused = false;
  std::string pauseReason;
  int64_t waitUntil = 0;
  int64_t lastErrorTime = 0;
  std::string lastError;
  int lastErrorStatus = 0;
  uint64_t requests = 0;
  uint64_t instances = 0;  // confirmed by the service: Mirrored or AlreadyPresent
  uint64_t bytes = 0;      // request bytes of the requests that got a response
  double instancesPerSecond = 0;  // over the last minute
  double megabytesPerSecond = 0;
  double lastLatencyMs = 0;
  unsigned int activeWorkers = 0;  // fewer than Workers after the service throttled
};


// Sends the outbox to the destination: Workers threads, each claiming batches within the count
// and byte limits, building one multipart/related body per batch and recording each instance's
// outcome. Destination-wide errors (network, 401 after a refresh, 403, 404, 413 alone, 429, 5xx)
// make every worker wait with backoff and never count against an item's attempts.
class Dispatcher
{
public:
  using SenderFactory = std::function<std::unique_ptr<IStowSender>()>;

  Dispatcher(Outbox& outbox, IOrthancGateway& orthanc, ILogger& logger,
             const DispatcherSettings& settings, SenderFactory senderFactory);
  ~Dispatcher();

  void Start();

  // Stops the workers. With abortRequests (when Orthanc stops), requests in progress are cut and
  // their items are sent again after the next start. Otherwise each worker first finishes its
  // request and records its outcome, which can take up to the request timeout.
  void Stop(bool abortRequests = true);

  // Stops the workers after their requests in progress, takes the new settings and sender
  // factory, and starts them again if they were running. The pause and the totals stay; a
  // backoff ends.
  void Reconfigure(const DispatcherSettings& settings, SenderFactory senderFactory);

  // Tells idle workers that this many new items were queued. One worker wakes for each full
  // request of them, up to all workers, and claims at once. Fewer items than a full request
  // wake one worker, which first waits BATCH_WINDOW_MS for more to arrive.
  void Wake(size_t queued = 0);

  // Records that Orthanc just stored an instance. While Orthanc ingests, the workers yield the
  // CPU to it (MirrorThreadPriority).
  void NoteIngestion()
  {
    ingestion_.NoteStore(NowMs());
  }

  IngestionMonitor& GetIngestionMonitor()
  {
    return ingestion_;
  }

  // Names Orthanc's storage directory, from which large files are mapped (InstanceFileReader).
  // Call it before Start().
  void SetStorageDirectory(const std::string& directory)
  {
    fileReader_.SetStorageDirectory(directory);
  }

  // Names the cache of the small files that Orthanc has just stored (InstanceFileReader). Call
  // it before Start().
  void SetStoredFileCache(StoredFileCache* cache)
  {
    fileReader_.SetStoredFileCache(cache);
  }

  void Pause();

  // Also ends a backoff: the workers try the destination again at once.
  void Resume();

  // Ends a backoff, so that the workers try the destination again at once, but keeps a pause.
  void EndWait();

  DispatcherStatus GetStatus();

  // The STOW-RS requests of the last windowSeconds: rate, p95 latency and errors by status.
  RequestSummary SummarizeRequests(int64_t nowMs, unsigned int windowSeconds)
  {
    return requestStatistics_.Summarize(nowMs, windowSeconds);
  }

  // Claims and sends one batch with the given sender, in the calling thread; returns false
  // when no item was due. The worker threads call it in a loop. Sets *fullBatch to whether the
  // claim reached MaxInstancesPerRequest or half of MaxRequestSizeMB, that is whether more items
  // were probably due.
  bool ProcessOneBatch(IStowSender& sender, bool* fullBatch = nullptr);

private:
  struct Batch;

  void Run(unsigned int workerIndex);
  bool WaitUntilSendingAllowed(unsigned int workerIndex);
  class InstanceFile;

  // Sends the items in one request. With deferred, each file is read from Orthanc when the
  // upload reaches its part; otherwise all of them are read before the request.
  void SendItems(IStowSender& sender, const std::vector<OutboxItem>& items, bool upsert,
                 bool deferred = true);

  // Handles a request that failed because a deferred file could not be read: deleted items are
  // Skipped and the others sent again. Returns false when every file was read.
  bool HandleUnreadFiles(IStowSender& sender, const Batch& batch);
  bool DeleteOldCopy(IStowSender& sender, const OutboxItem& item);
  void PostBatch(IStowSender& sender, Batch& batch);
  void ApplyPerInstance(const Batch& batch, const StowResponse& parsed,
                        const HttpResponse& response);
  void HandleTooLarge(IStowSender& sender, Batch& batch, const StowResponse& response);
  void WaitForDestination(const std::vector<int64_t>& ids, int statusCode,
                          const std::string& message, double retryAfterSeconds);
  void RecordDestinationWorks();
  void RecordRequest(uint64_t bytes, uint64_t confirmed, double latencyMs);
  double GetJitter();

  Outbox& outbox_;
  IOrthancGateway& orthanc_;
  InstanceFileReader fileReader_;
  IngestionMonitor ingestion_;
  std::atomic<bool> reportedPriority_{false};  // that the workers stay at nice 10
  ILogger& logger_;
  DispatcherSettings settings_;
  RetryPolicy policy_;
  SenderFactory senderFactory_;

  std::mutex mutex_;  // protects everything below
  std::condition_variable changed_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  std::atomic<bool> aborting_{false};  // set by Stop() to cut requests in progress
  bool paused_ = false;
  unsigned int wakeups_ = 0;           // idle workers that Wake() lets claim after the window
  unsigned int fullBatchWakeups_ = 0;  // idle workers that Wake() lets claim at once
  unsigned int destinationFailures_ = 0;
  unsigned int activeWorkers_ = 0;  // workers with a lower index send; halved on throttling
  unsigned int successesSinceChange_ = 0;
  int64_t waitUntil_ = 0;
  std::string waitReason_;
  int64_t lastErrorTime_ = 0;
  std::string lastError_;
  int lastErrorStatus_ = 0;
  uint64_t requests_ = 0;
  uint64_t instances_ = 0;
  uint64_t bytes_ = 0;
  double lastLatencyMs_ = 0;

  struct Sample
  {
    int64_t time;
    uint64_t instances;
    uint64_t bytes;
  };
  std::deque<Sample> recent_;  // requests of the last minute that got a response, for the throughput
  std::mt19937 random_;
  RequestStatistics requestStatistics_;  // thread-safe on its own
};
}  // namespace AzureDicom
