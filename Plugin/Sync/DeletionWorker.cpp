#include "Sync/DeletionWorker.h"

#include "Common/Clock.h"
#include "Common/ThreadPriority.h"
#include "Sync/ServiceDeletion.h"

#include <chrono>

namespace AzureDicom
{
namespace
{
const size_t DELETIONS_PER_PASS = 20;
const unsigned int IDLE_WAIT_MS = 5000;
const double BACKOFF_JITTER = 0.5;
}  // namespace


DeletionWorker::DeletionWorker(Outbox& outbox, ILogger& logger, const RetrySettings& retry,
                               Dispatcher::SenderFactory senderFactory, IOrthancGateway* orthanc)
    : outbox_(outbox), logger_(logger), policy_(retry), senderFactory_(std::move(senderFactory))
{
  if (orthanc != nullptr)
  {
    resolver_ = std::make_unique<InstanceResolver>(*orthanc);
  }
}


DeletionWorker::~DeletionWorker()
{
  Stop();
}


void DeletionWorker::Start()
{
  std::lock_guard<std::mutex> lock(mutex_);
  if (!thread_.joinable())
  {
    stopping_ = false;
    aborting_ = false;
    thread_ = std::thread(&DeletionWorker::Run, this);
  }
}


void DeletionWorker::Stop()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    aborting_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable())
  {
    thread_.join();
  }
}


void DeletionWorker::Wake()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
  }
  changed_.notify_all();
}


void DeletionWorker::Reconfigure(Dispatcher::SenderFactory senderFactory)
{
  bool wasRunning = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wasRunning = thread_.joinable();
  }

  Stop();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    senderFactory_ = std::move(senderFactory);
    failures_ = 0;
  }

  if (wasRunning)
  {
    Start();
  }
}


DeletionStatusCounts DeletionWorker::GetStatus()
{
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}


void DeletionWorker::Run()
{
  NameCurrentThread("azure-deletions");
  std::unique_ptr<IStowSender> sender = senderFactory_();
  sender->SetAbortFlag(&aborting_);

  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_)
  {
    lock.unlock();
    unsigned int waitMs = IDLE_WAIT_MS;
    try
    {
      for (const OutboxItem& item : outbox_.ListDeletionRequests(DELETIONS_PER_PASS))
      {
        if (aborting_)
        {
          break;
        }
        if (!DeleteOne(*sender, item))
        {
          std::lock_guard<std::mutex> guard(mutex_);
          waitMs = static_cast<unsigned int>(
              1000 * policy_.GetDestinationDelaySeconds(failures_, -1, BACKOFF_JITTER));
          break;
        }
      }
    }
    catch (const std::exception& e)
    {
      std::lock_guard<std::mutex> guard(mutex_);
      status_.lastError = e.what();
      logger_.Error(std::string("mirrored deletes: ") + e.what());
    }

    lock.lock();
    changed_.wait_for(lock, std::chrono::milliseconds(waitMs),
                      [this] { return stopping_ || woken_; });
    woken_ = false;
  }
}


bool DeletionWorker::DeleteOne(IStowSender& sender, const OutboxItem& item)
{
  const DeletionResult result = DeleteAtService(sender, item);
  switch (result.status)
  {
    case DeletionStatus::Deleted:
    case DeletionStatus::NotFound:
    {
      logger_.Info(
          "deleted instance " + item.instance.sopInstanceUid +
          " at the service after it was deleted in Orthanc (MirrorDeletes): " + result.message);
      CompleteDeletion(item);
      std::lock_guard<std::mutex> lock(mutex_);
      status_.done++;
      failures_ = 0;
      return true;
    }

    case DeletionStatus::Rejected:
    {
      outbox_.AbandonDeletion(item.id, "the service rejected its deletion: " + result.message,
                              NowMs());
      logger_.Warning("cannot delete instance " + item.instance.sopInstanceUid +
                      " at the service: " + result.message);
      std::lock_guard<std::mutex> lock(mutex_);
      status_.lastError = result.message;
      return true;
    }

    case DeletionStatus::Transient:
    default:
    {
      std::lock_guard<std::mutex> lock(mutex_);
      failures_++;
      if (status_.lastError != result.message)
      {
        logger_.Warning("mirrored deletes wait: " + result.message);
      }
      status_.lastError = result.message;
      return false;
    }
  }
}


void DeletionWorker::CompleteDeletion(const OutboxItem& item)
{
  // Orthanc 1.10 deletes and re-creates an overwritten instance in one transaction, and calls
  // the change callbacks after the commit. So an instance that Orthanc has now was stored again
  // after the deleted file, and the follower may have queued it before the deletion came.
  NewInstance instance;
  if (resolver_ && resolver_->Resolve(instance, item.instance.orthancId))
  {
    outbox_.RequeueAfterDeletion(item, instance, NowMs());
    logger_.Info("instance " + item.instance.sopInstanceUid +
                 " was stored again in Orthanc: sending its new file to the service");
    return;
  }

  if (!outbox_.CompleteDeletion(item, NowMs()))
  {
    logger_.Info("instance " + item.instance.sopInstanceUid +
                 " was stored again in Orthanc during its deletion: sending it again");
  }
}
}  // namespace AzureDicom
