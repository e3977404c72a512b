#include "Sync/Dispatcher.h"

#include "Azure/MultipartWriter.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Common/ThreadPriority.h"
#include "Sync/InstanceFiles.h"
#include "Sync/ServiceDeletion.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

namespace AzureDicom
{
namespace
{
const int64_t THROUGHPUT_WINDOW_MS = 60 * 1000;
const unsigned int IDLE_WAIT_MS = 1000;
const unsigned int ERROR_WAIT_MS = 5000;

// After an idle worker is woken, or after it sent a batch that was not full, it waits this long
// before claiming. Instances arriving one by one from a modality then go out in one request
// instead of one request each, and fewer, fuller requests cost Orthanc and the service less CPU
// per instance.
const unsigned int BATCH_WINDOW_MS = 100;

// While Orthanc ingests a burst, the workers check this often whether it has ended.
const unsigned int HOLD_CHECK_MS = 50;

const long HTTP_METHOD_NOT_ALLOWED = 405;

// After throttling, one more worker may send again after this many accepted requests in a row.
const unsigned int SUCCESSES_TO_GROW = 10;

std::string FormatMegabytes(uint64_t bytes)
{
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}


std::vector<int64_t> GetIds(const std::vector<OutboxItem>& items)
{
  std::vector<int64_t> ids;
  ids.reserve(items.size());
  for (const OutboxItem& item : items)
  {
    ids.push_back(item.id);
  }
  return ids;
}


// Returns the MD5 of the file read for the item: storedMd5, the digest that Orthanc stored for
// that file, when the reader returned one, and otherwise GetInstanceMd5().
std::string GetFileMd5(IOrthancGateway& orthanc, const OutboxItem& item, const IBuffer& file,
                       const std::string& storedMd5)
{
  if (!storedMd5.empty())
  {
    return storedMd5;
  }
  return GetInstanceMd5(orthanc, item.instance.orthancId, file.GetData(), file.GetSize());
}
}  // namespace


// The file of one item, read from Orthanc only when the upload reaches its part, so that a
// worker keeps one file of its batch in memory at a time instead of all of them.
class Dispatcher::InstanceFile final : public IDeferredBuffer
{
public:
  enum class Status
  {
    NotRead,
    Read,
    Deleted,      // no longer in Orthanc
    SizeChanged,  // Orthanc's file has another size than the outbox recorded
    Failed        // the REST call failed
  };

  InstanceFile(IOrthancGateway& orthanc, InstanceFileReader& reader, const OutboxItem& item,
               std::string& digest) :
      orthanc_(orthanc), reader_(reader), item_(item), digest_(digest)
  {
  }

  uint64_t GetSize() const override
  {
    return item_.instance.size;
  }

  std::unique_ptr<IBuffer> Load() noexcept override
  {
    try
    {
      std::string storedMd5;
      std::unique_ptr<IBuffer> file =
          reader_.Read(item_.instance.orthancId, item_.instance.size, item_.instance.fileUuid,
                       item_.instance.fileMd5, &storedMd5);
      if (!file)
      {
        status_ = Status::Deleted;
        return nullptr;
      }
      if (file->GetSize() != item_.instance.size)
      {
        status_ = Status::SizeChanged;
        message_ = "Orthanc returned " + std::to_string(file->GetSize()) +
                   " bytes, the outbox recorded " + std::to_string(item_.instance.size);
        return nullptr;
      }
      digest_ = GetFileMd5(orthanc_, item_, *file, storedMd5);
      status_ = Status::Read;
      return file;
    }
    catch (const std::exception& e)
    {
      status_ = Status::Failed;
      message_ = e.what();
      return nullptr;
    }
  }

  const OutboxItem& GetItem() const
  {
    return item_;
  }

  Status GetStatus() const
  {
    return status_;
  }

  const std::string& GetMessage() const
  {
    return message_;
  }

private:
  IOrthancGateway& orthanc_;
  InstanceFileReader& reader_;
  OutboxItem item_;
  std::string& digest_;  // an element of Batch::digests, whose address is stable
  Status status_ = Status::NotRead;
  std::string message_;
};


// The items of one request, with the body built from their files.
struct Dispatcher::Batch
{
  std::vector<OutboxItem> items;
  std::vector<std::string> sopInstanceUids;
  std::unique_ptr<MultipartWriter> body;  // refers to the files that Orthanc returned
  std::string contentType;

  uint64_t GetBodySize() const
  {
    return body ? body->GetBody().GetSize() : 0;
  }
  bool tokenRefreshed = false;
  bool upsert = false;                    // sent with PUT, the service's upsert
  std::map<int64_t, std::string> digests;  // hex MD5 of each item's file, by item ID
  std::vector<const InstanceFile*> deferredFiles;  // owned by body, read during the upload
};


Dispatcher::Dispatcher(Outbox& outbox, IOrthancGateway& orthanc, ILogger& logger,
                       const DispatcherSettings& settings, SenderFactory senderFactory) :
    outbox_(outbox),
    orthanc_(orthanc),
    fileReader_(orthanc),
    logger_(logger),
    settings_(settings),
    policy_(settings.retry),
    senderFactory_(std::move(senderFactory)),
    random_(std::random_device()())
{
  activeWorkers_ = settings_.workers;
}


Dispatcher::~Dispatcher()
{
  Stop();
}


void Dispatcher::Start()
{
  std::lock_guard<std::mutex> lock(mutex_);
  if (!workers_.empty())
  {
    return;
  }

  stopping_ = false;
  aborting_ = false;
  activeWorkers_ = settings_.workers;
  successesSinceChange_ = 0;
  for (unsigned int i = 0; i < settings_.workers; i++)
  {
    workers_.emplace_back(&Dispatcher::Run, this, i);
  }
  logger_.Info("sending to " + settings_.destination + " with " +
               std::to_string(settings_.workers) + " workers");
}


void Dispatcher::Stop(bool abortRequests)
{
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    aborting_ = abortRequests;
    workers.swap(workers_);
  }
  changed_.notify_all();
  for (std::thread& worker : workers)
  {
    worker.join();
  }
}


void Dispatcher::Reconfigure(const DispatcherSettings& settings, SenderFactory senderFactory)
{
  bool wasRunning = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wasRunning = !workers_.empty();
  }

  // Requests in progress finish at the old destination, so that their outcomes are recorded
  // there: a copy created by a cut request would be unknown to the outbox.
  Stop(false);

  {
    std::lock_guard<std::mutex> lock(mutex_);
    settings_ = settings;
    policy_ = RetryPolicy(settings.retry);
    senderFactory_ = std::move(senderFactory);
    destinationFailures_ = 0;
    waitUntil_ = 0;
    waitReason_.clear();
  }

  if (wasRunning)
  {
    Start();
  }
}


void Dispatcher::Wake(size_t queued)
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t fullBatches =
        std::min<size_t>(queued / std::max(1u, settings_.maxInstancesPerRequest), settings_.workers);
    if (fullBatches > 0)
    {
      fullBatchWakeups_ = std::max(fullBatchWakeups_, static_cast<unsigned int>(fullBatches));
    }
    else
    {
      wakeups_ = 1;
    }
  }
  changed_.notify_all();
}


void Dispatcher::Pause()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (paused_)
    {
      return;
    }
    paused_ = true;
  }
  logger_.Info("sending paused by an administrator");
}


void Dispatcher::Resume()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    paused_ = false;
    waitUntil_ = 0;
  }
  changed_.notify_all();
  logger_.Info("sending resumed");
}


void Dispatcher::EndWait()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waitUntil_ = 0;
  }
  changed_.notify_all();
}


DispatcherStatus Dispatcher::GetStatus()
{
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> lock(mutex_);

  while (!recent_.empty() && recent_.front().time < now - THROUGHPUT_WINDOW_MS)
  {
    recent_.pop_front();
  }

  DispatcherStatus status;
  uint64_t recentInstances = 0;
  uint64_t recentBytes = 0;
  for (const Sample& sample : recent_)
  {
    recentInstances += sample.instances;
    recentBytes += sample.bytes;
  }
  const double windowSeconds = THROUGHPUT_WINDOW_MS / 1000.0;
  status.instancesPerSecond = recentInstances / windowSeconds;
  status.megabytesPerSecond = recentBytes / (1024.0 * 1024.0) / windowSeconds;

  status.activeWorkers = activeWorkers_;
  status.paused = paused_;
  if (paused_)
  {
    status.state = "Paused";
    status.pauseReason = "paused by an administrator (POST /azure-dicom/resume to resume)";
  }
  else if (now < waitUntil_)
  {
    status.state = "Waiting";
    status.pauseReason = waitReason_;
    status.waitUntil = waitUntil_;
  }
  else
  {
    status.state = "Running";
  }

  status.lastErrorTime = lastErrorTime_;
  status.lastError = lastError_;
  status.lastErrorStatus = lastErrorStatus_;
  status.requests = requests_;
  status.instances = instances_;
  status.bytes = bytes_;
  status.lastLatencyMs = lastLatencyMs_;
  return status;
}


double Dispatcher::GetJitter()
{
  std::lock_guard<std::mutex> lock(mutex_);
  return std::uniform_real_distribution<double>(0.0, 1.0)(random_);
}


bool Dispatcher::WaitUntilSendingAllowed(unsigned int workerIndex)
{
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;)
  {
    if (stopping_)
    {
      return false;
    }

    const int64_t now = NowMs();
    if (paused_ || workerIndex >= activeWorkers_)
    {
      changed_.wait(lock);
    }
    else if (now < waitUntil_)
    {
      changed_.wait_for(lock, std::chrono::milliseconds(waitUntil_ - now));
    }
    else if (ingestion_.ShouldHold(now))
    {
      changed_.wait_for(lock, std::chrono::milliseconds(HOLD_CHECK_MS));
    }
    else
    {
      return true;
    }
  }
}


void Dispatcher::Run(unsigned int workerIndex)
{
  NameCurrentThread("azure-stow-" + std::to_string(workerIndex + 1));
  MirrorThreadPriority priority(logger_, reportedPriority_);
  std::unique_ptr<IStowSender> sender = senderFactory_();
  sender->SetAbortFlag(&aborting_);

  while (WaitUntilSendingAllowed(workerIndex))
  {
    priority.Adjust(ingestion_.IsIngesting(NowMs()));
    bool sent = false;
    bool fullBatch = false;
    unsigned int idleMs = IDLE_WAIT_MS;
    try
    {
      sent = ProcessOneBatch(*sender, &fullBatch);
    }
    catch (const std::exception& e)
    {
      // Typically the outbox database (locked, disk full): its items stay as they were, and a
      // Sending item whose result could not be recorded returns to Pending when its lease ends.
      std::lock_guard<std::mutex> lock(mutex_);
      if (lastError_ != e.what())
      {
        logger_.Error(std::string("a worker failed, retrying in 5 s: ") + e.what());
      }
      lastErrorTime_ = NowMs();
      lastError_ = e.what();
      lastErrorStatus_ = 0;
      idleMs = ERROR_WAIT_MS;
    }

    if (sent && !fullBatch)
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait_for(lock, std::chrono::milliseconds(BATCH_WINDOW_MS),
                        [this] { return stopping_; });
    }
    else if (!sent)
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait_for(lock, std::chrono::milliseconds(idleMs), [this] {
        return fullBatchWakeups_ > 0 || wakeups_ > 0 || stopping_;
      });
      if (fullBatchWakeups_ > 0)
      {
        fullBatchWakeups_--;
      }
      else if (wakeups_ > 0)
      {
        wakeups_--;
        changed_.wait_for(lock, std::chrono::milliseconds(BATCH_WINDOW_MS),
                          [this] { return stopping_; });
      }
    }
  }
}


bool Dispatcher::ProcessOneBatch(IStowSender& sender, bool* fullBatch)
{
  const int64_t now = NowMs();
  const std::vector<OutboxItem> items =
      outbox_.ClaimBatch(settings_.maxInstancesPerRequest, settings_.maxRequestBytes, now,
                         now + static_cast<int64_t>(settings_.leaseSeconds) * 1000);
  if (fullBatch != nullptr)
  {
    uint64_t bytes = 0;
    for (const OutboxItem& item : items)
    {
      bytes += item.instance.size;
    }
    *fullBatch = items.size() >= settings_.maxInstancesPerRequest ||
                 bytes >= settings_.maxRequestBytes / 2;
  }
  if (items.empty())
  {
    return false;
  }

  // Instances that Orthanc stored again with other content, under OnConflict Replace: the v2
  // API replaces them with PUT; otherwise the old copy is deleted before the new one is sent.
  std::vector<OutboxItem> posts;
  std::vector<OutboxItem> upserts;
  for (const OutboxItem& item : items)
  {
    const bool replace = item.contentChanged && settings_.onConflict == ConflictPolicy::Replace;
    if (replace && settings_.target.apiVersion == "v2")
    {
      upserts.push_back(item);
    }
    else if (!replace || DeleteOldCopy(sender, item))
    {
      posts.push_back(item);
    }
  }

  if (!posts.empty())
  {
    SendItems(sender, posts, false);
  }
  if (!upserts.empty())
  {
    SendItems(sender, upserts, true);
  }
  return true;
}


bool Dispatcher::DeleteOldCopy(IStowSender& sender, const OutboxItem& item)
{
  if (item.sentTo.IsEmpty() && item.destination.empty())
  {
    return true;
  }

  const DeletionResult result = DeleteAtService(sender, item);
  switch (result.status)
  {
    case DeletionStatus::Deleted:
    case DeletionStatus::NotFound:
      outbox_.ForgetCreation(item.id, NowMs());
      logger_.Info("deleted the old copy of instance " + item.instance.sopInstanceUid +
                   " before sending its new content (OnConflict is Replace): " + result.message);
      return true;

    case DeletionStatus::Transient:
      WaitForDestination({item.id}, static_cast<int>(result.httpStatus), result.message, -1);
      return false;

    case DeletionStatus::Rejected:
    default:
    {
      ItemOutcome outcome;
      outcome.id = item.id;
      outcome.state = ItemState::Failed;
      outcome.statusCode = static_cast<int>(result.httpStatus);
      outcome.message = "cannot replace the copy at the service, whose content differs: " +
                        result.message;
      outbox_.RecordOutcomes({outcome}, NowMs());
      logger_.Warning("instance " + item.instance.sopInstanceUid + " is Failed: " +
                      outcome.message);
      return false;
    }
  }
}


void Dispatcher::SendItems(IStowSender& sender, const std::vector<OutboxItem>& items,
                           bool upsert, bool deferred)
{
  Batch batch;
  batch.upsert = upsert;
  std::vector<ItemOutcome> refused;
  auto writer = std::make_unique<MultipartWriter>();

  for (const OutboxItem& item : items)
  {
    ItemOutcome outcome;
    outcome.id = item.id;
    outcome.destination = settings_.destination;

    if (item.instance.size > SERVICE_MAX_REQUEST_BYTES)
    {
      outcome.state = ItemState::Failed;
      outcome.message = "the instance (" + FormatMegabytes(item.instance.size) +
                        ") is larger than the service's 2 GB limit on a request";
      refused.push_back(outcome);
      continue;
    }

    // The first part is read before the request, so that a batch whose files were all deleted
    // meanwhile (a study deleted in Orthanc) sends no request at all.
    if (deferred && item.instance.size > 0 && !batch.items.empty())
    {
      auto file =
          std::make_unique<InstanceFile>(orthanc_, fileReader_, item, batch.digests[item.id]);
      batch.deferredFiles.push_back(file.get());
      writer->AddDeferredPart(std::move(file));
    }
    else
    {
      // The body refers to Orthanc's buffer of the file, which is in memory once.
      std::string storedMd5;
      std::unique_ptr<IBuffer> file =
          fileReader_.Read(item.instance.orthancId, deferred ? item.instance.size : 0,
                           item.instance.fileUuid, item.instance.fileMd5, &storedMd5);
      if (!file)
      {
        outbox_.MarkSkipped(item.id, "deleted from Orthanc before it was sent", NowMs());
        continue;
      }

      batch.digests[item.id] = GetFileMd5(orthanc_, item, *file, storedMd5);
      writer->AddPart(std::move(file));
    }

    batch.items.push_back(item);
    batch.sopInstanceUids.push_back(item.instance.sopInstanceUid);
  }

  if (!refused.empty())
  {
    outbox_.RecordOutcomes(refused, NowMs());
    logger_.Warning(std::to_string(refused.size()) +
                    " instances are larger than the service accepts and are Failed");
  }

  if (batch.items.empty())
  {
    return;
  }

  batch.contentType = writer->GetContentType();
  writer->Close();
  batch.body = std::move(writer);
  PostBatch(sender, batch);
}


void Dispatcher::PostBatch(IStowSender& sender, Batch& batch)
{
  const std::vector<int64_t> ids = GetIds(batch.items);
  HttpResponse response;
  const int64_t startedAt = NowMs();
  try
  {
    response = sender.Send(batch.body->GetBody(), batch.contentType, batch.upsert);
    requestStatistics_.Record(NowMs(), response.status, response.elapsedMs);
  }
  catch (const Exception& e)
  {
    if (!aborting_ && HandleUnreadFiles(sender, batch))
    {
      return;
    }

    if (!aborting_ && e.GetCode() != ErrorCode::Unauthorized)
    {
      // A request without a response. Unauthorized means that there was no token to send it
      // with, so no request went to the service.
      requestStatistics_.Record(NowMs(), 0, static_cast<double>(NowMs() - startedAt));
    }

    if (aborting_)
    {
      // Orthanc is stopping: the items are sent again after the restart.
      outbox_.Release(ids, NowMs(), NowMs());
      return;
    }

    WaitForDestination(ids, 0, e.what(), -1);
    return;
  }

  if (batch.upsert && response.status == HTTP_METHOD_NOT_ALLOWED)
  {
    // A service without the upsert: the old copies are deleted and the new ones sent with POST.
    logger_.Warning("the service does not accept PUT (HTTP 405) at " + settings_.destination +
                    ": replacing " + std::to_string(batch.items.size()) +
                    " instances by DELETE and POST instead");
    std::vector<OutboxItem> posts;
    for (const OutboxItem& item : batch.items)
    {
      if (DeleteOldCopy(sender, item))
      {
        posts.push_back(item);
      }
    }
    batch.body.reset();
    if (!posts.empty())
    {
      SendItems(sender, posts, false);
    }
    return;
  }

  const StowResponse parsed =
      ParseStowResponse(response.status, response.GetHeader("content-type"), response.body,
                        response.GetHeader("retry-after"), batch.sopInstanceUids);

  const std::string summary = "HTTP " + std::to_string(response.status) + " from " +
                              settings_.destination + ": " + parsed.message;

  switch (parsed.disposition)
  {
    case BatchDisposition::PerInstance:
      RecordDestinationWorks();
      ApplyPerInstance(batch, parsed, response);
      break;

    case BatchDisposition::TokenRejected:
      if (!batch.tokenRefreshed)
      {
        // A token can be revoked or expire early: one refresh, then the same request again.
        batch.tokenRefreshed = true;
        sender.InvalidateToken();
        PostBatch(sender, batch);
      }
      else
      {
        WaitForDestination(ids, 401, "the service rejected a fresh token. " + summary,
                           parsed.retryAfterSeconds);
      }
      break;

    case BatchDisposition::Forbidden:
      WaitForDestination(ids, 403,
                         "the principal " +
                             (settings_.principal.empty() ? "in use" : settings_.principal) +
                             " lacks the DICOM Data Owner role on the service (role "
                             "assignments can take minutes to apply). " +
                             summary,
                         parsed.retryAfterSeconds);
      break;

    case BatchDisposition::WrongEndpoint:
      WaitForDestination(ids, static_cast<int>(response.status),
                         "the service does not know this URL: check ServiceUrl, ApiVersion and "
                         "Partition. " +
                             summary,
                         parsed.retryAfterSeconds);
      break;

    case BatchDisposition::TooLarge:
      HandleTooLarge(sender, batch, parsed);
      break;

    case BatchDisposition::Transient:
    default:
      WaitForDestination(ids, static_cast<int>(response.status), summary,
                         parsed.retryAfterSeconds);
      break;
  }
}


bool Dispatcher::HandleUnreadFiles(IStowSender& sender, const Batch& batch)
{
  std::string failure = batch.body->GetLoadError();
  bool unread = !failure.empty();
  std::vector<OutboxItem> again;   // sent again, deferred
  std::vector<OutboxItem> reread;  // sent again, read before the request
  std::map<int64_t, const InstanceFile*> deferredById;
  for (const InstanceFile* file : batch.deferredFiles)
  {
    deferredById[file->GetItem().id] = file;
  }

  for (const OutboxItem& item : batch.items)
  {
    const auto deferredFile = deferredById.find(item.id);
    if (deferredFile == deferredById.end())
    {
      again.push_back(item);  // read before the request
      continue;
    }

    const InstanceFile* file = deferredFile->second;
    switch (file->GetStatus())
    {
      case InstanceFile::Status::Deleted:
        unread = true;
        outbox_.MarkSkipped(item.id, "deleted from Orthanc before it was sent", NowMs());
        break;

      case InstanceFile::Status::SizeChanged:
        unread = true;
        logger_.Warning("instance " + item.instance.sopInstanceUid + " changed size in Orthanc (" +
                        file->GetMessage() + "): sending it again from a copy in memory");
        reread.push_back(item);
        break;

      case InstanceFile::Status::Failed:
        unread = true;
        failure = "cannot read instance " + item.instance.orthancId + " from Orthanc: " +
                  file->GetMessage();
        again.push_back(item);
        break;

      default:
        again.push_back(item);
        break;
    }
  }

  if (!unread)
  {
    return false;  // every file that the upload reached was read: the request itself failed
  }

  if (!failure.empty())
  {
    // Orthanc could not return a file: the items wait as after a failed worker.
    logger_.Error("a batch of " + std::to_string(batch.items.size()) +
                  " instances was not sent, retrying in 5 s: " + failure);
    std::vector<OutboxItem> waiting = again;
    waiting.insert(waiting.end(), reread.begin(), reread.end());
    outbox_.Release(GetIds(waiting), NowMs() + ERROR_WAIT_MS, NowMs());
    return true;
  }

  if (!again.empty())
  {
    SendItems(sender, again, batch.upsert, true);
  }
  if (!reread.empty())
  {
    SendItems(sender, reread, batch.upsert, false);
  }
  return true;
}


void Dispatcher::ApplyPerInstance(const Batch& batch, const StowResponse& parsed,
                                  const HttpResponse& response)
{
  const int64_t now = NowMs();
  std::vector<ItemOutcome> outcomes;
  std::map<InstanceDisposition, unsigned int> tally;
  uint64_t confirmed = 0;

  for (const OutboxItem& item : batch.items)
  {
    ItemOutcome outcome;
    outcome.id = item.id;
    outcome.statusCode = static_cast<int>(response.status);
    outcome.destination = settings_.destination;
    outcome.sentTo = settings_.target;
    auto digest = batch.digests.find(item.id);
    if (digest != batch.digests.end())
    {
      outcome.contentMd5 = digest->second;
    }

    InstanceResult result;
    auto found = parsed.instances.find(item.instance.sopInstanceUid);
    if (found != parsed.instances.end())
    {
      result = found->second;
    }
    else
    {
      result.disposition = InstanceDisposition::RetryLater;
      result.message = "not confirmed by the service";
    }

    outcome.failureReason = result.failureReason;
    outcome.warningReason = result.warningReason;
    outcome.message = result.message;
    tally[result.disposition]++;

    switch (result.disposition)
    {
      case InstanceDisposition::Mirrored:
        outcome.state = ItemState::Mirrored;
        confirmed++;
        break;

      case InstanceDisposition::AlreadyPresent:
        outcome.state = ItemState::AlreadyPresent;
        confirmed++;
        if (item.contentChanged)
        {
          outcome.contentConflict = true;
          outcome.message = std::string("the service already stores other content for this SOP "
                                        "Instance UID and keeps it") +
                            (settings_.onConflict == ConflictPolicy::Keep
                                 ? " (OnConflict is Keep)"
                                 : " (it was stored there again after the old copy was deleted)");
        }
        break;

      case InstanceDisposition::Failed:
        outcome.state = ItemState::Failed;
        break;

      case InstanceDisposition::RetryLater:
      case InstanceDisposition::RetryBackoff:
      default:
      {
        const unsigned int attempts = item.attempts + 1;
        if (policy_.IsExhausted(attempts))
        {
          outcome.state = ItemState::Failed;
          outcome.message = "gave up after " + std::to_string(attempts) + " attempts: " +
                            result.message;
        }
        else
        {
          outcome.state = ItemState::Pending;
          const double delay = policy_.GetItemDelaySeconds(attempts, GetJitter());
          outcome.nextAttemptAt = now + static_cast<int64_t>(delay * 1000);
        }
        break;
      }
    }

    outcomes.push_back(outcome);
  }

  // Counted first, so that a status that shows the items confirmed also counts them as sent.
  RecordRequest(batch.GetBodySize(), confirmed, response.elapsedMs);
  outbox_.RecordOutcomes(outcomes, now);

  logger_.Info(
      "sent " + std::to_string(batch.items.size()) + " instances (" +
      FormatMegabytes(batch.GetBodySize()) + ") to " + settings_.destination + ": HTTP " +
      std::to_string(response.status) + " in " + std::to_string(static_cast<long>(response.elapsedMs)) +
      " ms; " + std::to_string(tally[InstanceDisposition::Mirrored]) + " mirrored, " +
      std::to_string(tally[InstanceDisposition::AlreadyPresent]) + " already present, " +
      std::to_string(tally[InstanceDisposition::RetryLater] +
                     tally[InstanceDisposition::RetryBackoff]) +
      " to retry, " + std::to_string(tally[InstanceDisposition::Failed]) + " failed");
}


void Dispatcher::HandleTooLarge(IStowSender& sender, Batch& batch, const StowResponse& parsed)
{
  const std::vector<OutboxItem> items = batch.items;
  if (items.size() == 1)
  {
    ItemOutcome outcome;
    outcome.id = items.front().id;
    outcome.state = ItemState::Failed;
    outcome.statusCode = 413;
    outcome.destination = settings_.destination;
    outcome.message = "the service rejected the instance alone as too large (413): " +
                      parsed.message;
    outbox_.RecordOutcomes({outcome}, NowMs());
    logger_.Warning("instance " + items.front().instance.sopInstanceUid +
                    " is Failed: the service rejected it alone as too large (413)");
    return;
  }

  // The service's limit is lower than MaxRequestSizeMB: halve the batch until it fits. The
  // items stay claimed, and their files are read again for each half.
  logger_.Warning("the service rejected a request of " + FormatMegabytes(batch.GetBodySize()) +
                  " as too large (413): splitting the batch of " +
                  std::to_string(items.size()) + " instances; lower MaxRequestSizeMB");
  batch.body.reset();

  const size_t half = items.size() / 2;
  SendItems(sender, std::vector<OutboxItem>(items.begin(), items.begin() + half), batch.upsert);
  SendItems(sender, std::vector<OutboxItem>(items.begin() + half, items.end()), batch.upsert);
}


void Dispatcher::WaitForDestination(const std::vector<int64_t>& ids, int statusCode,
                                    const std::string& message, double retryAfterSeconds)
{
  const int64_t now = NowMs();
  const double jitter = GetJitter();
  int64_t waitUntil;
  unsigned int failures;
  {
    std::lock_guard<std::mutex> lock(mutex_);

    // Workers that fail while the others already wait add nothing: the backoff grows with
    // the attempts made after a wait, not with the number of workers.
    const bool startsWait = now >= waitUntil_;
    if (startsWait)
    {
      destinationFailures_++;
      const double delay =
          policy_.GetDestinationDelaySeconds(destinationFailures_, retryAfterSeconds, jitter);
      waitUntil_ = now + static_cast<int64_t>(delay * 1000);
    }
    failures = destinationFailures_;
    waitUntil = waitUntil_;
    waitReason_ = message;

    // Throttling: fewer concurrent requests from now on, growing again after successes. Workers
    // throttled during the same wait halve the count once, because they count as one failure.
    const bool throttled = statusCode == 429 || statusCode == 503;
    if (throttled)
    {
      successesSinceChange_ = 0;
    }
    if (throttled && startsWait && activeWorkers_ > 1)
    {
      activeWorkers_ = std::max(1u, activeWorkers_ / 2);
      logger_.Warning("the service throttles (HTTP " + std::to_string(statusCode) +
                      "): sending with " + std::to_string(activeWorkers_) + " of " +
                      std::to_string(settings_.workers) + " workers");
    }
    lastErrorTime_ = now;
    lastError_ = message;
    lastErrorStatus_ = statusCode;
  }

  // The items are due at once: the dispatcher's own wait keeps them back, so that a resume by
  // an administrator ends the backoff for them too.
  outbox_.Release(ids, now, now);

  const std::string line = "sending waits " + std::to_string((waitUntil - now) / 1000) +
                           " s (destination-wide error " + std::to_string(failures) +
                           " in a row): " + message;
  if (failures == 1)
  {
    logger_.Warning(line);
  }
  else
  {
    logger_.Info(line);
  }
}


void Dispatcher::RecordDestinationWorks()
{
  bool recovered = false;
  bool grown = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    recovered = destinationFailures_ > 0;
    destinationFailures_ = 0;
    waitReason_.clear();

    if (activeWorkers_ < settings_.workers && ++successesSinceChange_ >= SUCCESSES_TO_GROW)
    {
      activeWorkers_++;
      successesSinceChange_ = 0;
      grown = true;
    }
  }

  if (grown)
  {
    changed_.notify_all();
  }

  if (recovered)
  {
    logger_.Warning("the destination " + settings_.destination + " accepts requests again");
  }
}


void Dispatcher::RecordRequest(uint64_t bytes, uint64_t confirmed, double latencyMs)
{
  std::lock_guard<std::mutex> lock(mutex_);
  requests_++;
  instances_ += confirmed;
  bytes_ += bytes;
  lastLatencyMs_ = latencyMs;

  const int64_t now = NowMs();
  recent_.push_back({now, confirmed, bytes});
  while (recent_.front().time < now - THROUGHPUT_WINDOW_MS)
  {
    recent_.pop_front();
  }
}
}  // namespace AzureDicom
