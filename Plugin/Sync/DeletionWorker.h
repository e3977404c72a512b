#pragma once

#include "Common/Logger.h"
#include "Sync/Dispatcher.h"
#include "Sync/InstanceResolver.h"
#include "Sync/Outbox.h"
#include "Sync/RetryPolicy.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace AzureDicom
{
struct DeletionStatusCounts
{
  uint64_t done = 0;  // deleted at the service (or already gone) since Orthanc started
  std::string lastError;
};


// Deletes at the service the copies of instances deleted in Orthanc (MirrorDeletes), from the
// requests that the outbox keeps, so that a restart loses none. One thread; destination-wide
// errors make it wait with the dispatcher's backoff.
//
// With OverwriteInstances, Orthanc reports an overwrite as the deletion of the old instance, and
// the new one has the same Orthanc ID and outbox item. After each DELETE, the worker looks the
// instance up in Orthanc (when it has a gateway). If Orthanc has it again, the item returns to
// Pending with the new file, so that the service ends with the new content.
class DeletionWorker
{
public:
  // orthanc may be null: every deleted instance then counts as gone from Orthanc.
  DeletionWorker(Outbox& outbox, ILogger& logger, const RetrySettings& retry,
                 Dispatcher::SenderFactory senderFactory, IOrthancGateway* orthanc = nullptr);
  ~DeletionWorker();

  void Start();
  void Stop();
  void Wake();

  // Restarts the thread with a new sender factory (new credentials or TLS settings).
  void Reconfigure(Dispatcher::SenderFactory senderFactory);

  DeletionStatusCounts GetStatus();

private:
  void Run();

  // Returns false when the worker must wait before the next request.
  bool DeleteOne(IStowSender& sender, const OutboxItem& item);

  // Removes the item of a deleted copy, or queues it again when Orthanc stores the instance now.
  void CompleteDeletion(const OutboxItem& item);

  Outbox& outbox_;
  ILogger& logger_;
  RetryPolicy policy_;
  Dispatcher::SenderFactory senderFactory_;
  std::unique_ptr<InstanceResolver> resolver_;  // null without a gateway; used by Run() only

  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread thread_;
  bool stopping_ = false;
  bool woken_ = false;
  std::atomic<bool> aborting_{false};
  unsigned int failures_ = 0;
  DeletionStatusCounts status_;
};
}  // namespace AzureDicom
