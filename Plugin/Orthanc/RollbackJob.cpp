#include "Orthanc/RollbackJob.h"

#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Sync/OutboxJson.h"
#include "Sync/RuntimeSettings.h"
#include "Sync/ServiceDeletion.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

namespace AzureDicom
{
namespace
{
const char* const JOB_TYPE = "AzureDicomRollback";
const size_t FIRST_ITEMS = 20;
const size_t DELETES_PER_STEP = 10;
const int DEFAULT_JOB_PRIORITY = 0;

// After a transient failure a step waits this long per failure in a row, up to the maximum, so
// that an outage of the service does not fail the rollback.
const unsigned int WAIT_PER_FAILURE_MS = 1000;
const unsigned int MAX_WAIT_MS = 10000;

PluginContext* (*contextGetter)() = nullptr;


OrthancPluginJob* Unserialize(const char* jobType, const char* serialized)
{
  PluginContext* context = contextGetter != nullptr ? contextGetter() : nullptr;
  if (context == nullptr || jobType == nullptr || std::string(jobType) != JOB_TYPE)
  {
    return nullptr;
  }

  Json::Value json;
  std::string error;
  const std::string text = serialized != nullptr ? serialized : "";
  if (!ParseJson(json, error, text.data(), text.size()) || !json["Rollback"].isString())
  {
    context->GetLogger().Error(
        "cannot resume a rollback job from Orthanc's job registry: "
        "invalid content " +
        text);
    return nullptr;
  }

  try
  {
    const int64_t rollbackId = std::stoll(json["Rollback"].asString());
    return RollbackJob::CreateHandle(std::make_unique<RollbackJob>(*context, rollbackId));
  }
  catch (const std::exception& e)
  {
    context->GetLogger().Error(std::string("cannot resume a rollback job: ") + e.what());
    return nullptr;
  }
}


// Throws Exception(BadRequest) when the settings of the snapshot do not fit the current
// configuration file, before the rollback changes anything.
void CheckRestorable(PluginContext& context, const SnapshotRecord& snapshot)
{
  const std::string error = context.FindRestoreError(snapshot);
  if (!error.empty())
  {
    throw Exception(ErrorCode::BadRequest,
                    "the settings of snapshot " + std::to_string(snapshot.id) +
                        " cannot be restored with the current configuration file: " + error +
                        ". Nothing was changed: change the configuration file, or roll back to "
                        "another snapshot");
  }
}


// Restores the snapshot's settings, then records the rollback, marks its items and fills plan
// with what it marked. When the recording fails, the settings of the safety snapshot are
// restored, so that a failed start leaves the settings and the outbox as they were. The caller
// has stopped the dispatcher.
int64_t RestoreAndRecord(PluginContext& context, const SnapshotRecord& snapshot,
                         const SnapshotRecord& safety, bool deleteFromService, RollbackPlan& plan)
{
  context.RestoreSettings(snapshot);
  try
  {
    return context.GetOutbox().StartRollback(snapshot, safety.id, deleteFromService, NowMs(), &plan,
                                             FIRST_ITEMS);
  }
  catch (...)
  {
    try
    {
      context.RestoreSettings(safety);
    }
    catch (const std::exception& e)
    {
      context.GetLogger().Error("cannot restore the settings of safety snapshot " +
                                std::to_string(safety.id) +
                                " after a failed rollback: " + e.what());
    }
    throw;
  }
}


Json::Value DescribePlan(const RollbackPlan& plan, const SnapshotRecord& snapshot,
                         const Json::Value& settingsDiff)
{
  Json::Value answer = ToJson(plan);
  answer["Snapshot"] = std::to_string(snapshot.id);
  answer["Confirm"] = std::to_string(snapshot.id);
  answer["SettingsDiff"] = settingsDiff;
  return answer;
}
}  // namespace


Json::Value PlanRollback(PluginContext& context, const SnapshotRecord& snapshot,
                         bool deleteFromService)
{
  const RollbackPlan plan =
      context.GetOutbox().PlanRollback(snapshot, FIRST_ITEMS, deleteFromService);
  const Json::Value settingsDiff =
      DiffValues(context.GetRuntimeValuesNow(), PluginContext::GetRuntimeValuesOf(snapshot));

  Json::Value answer = DescribePlan(plan, snapshot, settingsDiff);
  answer["DryRun"] = true;
  answer["SettingsError"] = context.FindRestoreError(snapshot);
  answer["InFlight"]["Message"] =
      plan.inFlight == 0
          ? ""
          : std::to_string(plan.inFlight) +
                " instances are being sent now. The rollback waits until the requests of this "
                "node end, then deletes at the service those that the service confirms as "
                "created. Those queued after the snapshot that return to Pending are dropped";
  return answer;
}


Json::Value RunRollback(PluginContext& context, const SnapshotRecord& snapshot,
                        bool deleteFromService)
{
  // Checked before the safety snapshot and the stop of the dispatcher, so that a rejected
  // request changes nothing.
  std::lock_guard<std::mutex> lock(context.GetRollbackStartMutex());
  context.GetOutbox().CheckNoRunningRollback();
  CheckRestorable(context, snapshot);
  const Json::Value settingsDiff =
      DiffValues(context.GetRuntimeValuesNow(), PluginContext::GetRuntimeValuesOf(snapshot));

  const SnapshotRecord safety = context.TakeSnapshot(
      "before the rollback to snapshot " + std::to_string(snapshot.id), "Rollback");

  // No batch may be confirmed between the restore and the marking: it would be created after
  // the snapshot without being part of the rollback. Requests in progress finish first, because
  // the service may store what a cut request sent, and the plan is read after them.
  Dispatcher& dispatcher = context.GetDispatcher();
  dispatcher.Stop(false);
  int64_t rollbackId = 0;
  RollbackPlan marked;
  try
  {
    rollbackId = RestoreAndRecord(context, snapshot, safety, deleteFromService, marked);
  }
  catch (...)
  {
    dispatcher.Start();
    throw;
  }
  dispatcher.Start();

  Json::Value plan = DescribePlan(marked, snapshot, settingsDiff);
  plan["DryRun"] = false;
  plan["SettingsError"] = "";
  plan["InFlight"]["Message"] =
      marked.inFlight == 0 ? ""
                           : std::to_string(marked.inFlight) +
                                 " instances were being sent by other nodes of the outbox: "
                                 "the rollback leaves them alone";

  const std::string jobId = RollbackJob::Submit(context, rollbackId);
  context.GetLogger().Warning(
      "rollback " + std::to_string(rollbackId) + " to snapshot " + std::to_string(snapshot.id) +
      " started as job " + jobId + ": " + plan["Delete"]["Instances"].asString() +
      " instances to delete at the service, " + plan["DroppedPending"]["Instances"].asString() +
      " pending instances dropped");

  Json::Value answer;
  answer["ID"] = jobId;
  answer["Path"] = "/jobs/" + jobId;
  answer["Rollback"] = std::to_string(rollbackId);
  answer["SafetySnapshot"] = ToJson(safety);
  answer["Plan"] = plan;
  return answer;
}


RollbackJob::RollbackJob(PluginContext& context, int64_t rollbackId)
    : context_(context), rollbackId_(rollbackId), claimed_(context.ClaimRollbackJob(rollbackId))
{
}


RollbackJob::~RollbackJob()
{
  if (claimed_)
  {
    context_.ReleaseRollbackJob(rollbackId_);
  }
}


OrthancPluginJob* RollbackJob::CreateHandle(std::unique_ptr<RollbackJob> job)
{
  OrthancPluginContext* orthanc = job->context_.GetOrthanc();

  // The C API takes plain functions; each forwards to the RollbackJob behind the void pointer.
  OrthancPluginJob* handle = OrthancPluginCreateJob(
      orthanc, job.get(), [](void* self) { delete static_cast<RollbackJob*>(self); }, JOB_TYPE,
      [](void* self) { return static_cast<RollbackJob*>(self)->GetProgress(); },
      [](void* self) { return static_cast<RollbackJob*>(self)->GetContent(); },
      [](void* self) { return static_cast<RollbackJob*>(self)->GetSerialized(); },
      [](void* self) { return static_cast<RollbackJob*>(self)->Step(); },
      [](void* self, OrthancPluginJobStopReason reason)
      {
        static_cast<RollbackJob*>(self)->Stop(reason);
        return OrthancPluginErrorCode_Success;
      },
      [](void*) { return OrthancPluginErrorCode_Success; });  // the progress is in the outbox
  if (handle == nullptr)
  {
    throw Exception(ErrorCode::InternalError, "Orthanc could not create the rollback job");
  }
  job.release();  // owned by the job handle now, freed through the finalize function
  return handle;
}


std::string RollbackJob::Submit(PluginContext& context, int64_t rollbackId)
{
  OrthancPluginContext* orthanc = context.GetOrthanc();
  OrthancPluginJob* handle = CreateHandle(std::make_unique<RollbackJob>(context, rollbackId));

  char* id = OrthancPluginSubmitJob(orthanc, handle, DEFAULT_JOB_PRIORITY);
  if (id == nullptr)
  {
    throw Exception(ErrorCode::InternalError, "Orthanc could not submit the rollback job");
  }
  const std::string result(id);
  OrthancPluginFreeString(orthanc, id);

  context.GetOutbox().SetRollbackJob(rollbackId, result);
  return result;
}


void RollbackJob::RegisterUnserializer(OrthancPluginContext* orthanc,
                                       PluginContext* (*getContext)())
{
  contextGetter = getContext;
  OrthancPluginRegisterJobsUnserializer(orthanc, Unserialize);
}


OrthancPluginJobStepStatus RollbackJob::Step()
{
  try
  {
    RollbackRecord rollback;
    if (!claimed_ || !context_.GetOutbox().GetRollback(rollback, rollbackId_))
    {
      return OrthancPluginJobStepStatus_Success;  // another job of this process runs it
    }
    if (rollback.state != RollbackState::Running)
    {
      return rollback.state == RollbackState::Success ? OrthancPluginJobStepStatus_Success
                                                      : OrthancPluginJobStepStatus_Failure;
    }

    const std::vector<OutboxItem> items =
        context_.GetOutbox().ListRollbackItems(rollbackId_, DELETES_PER_STEP);
    if (items.empty())
    {
      return Finish();
    }

    if (!sender_)
    {
      sender_ = context_.CreateSender();
    }

    for (const OutboxItem& item : items)
    {
      const DeletionResult result = DeleteAtService(*sender_, item);
      if (result.status == DeletionStatus::Transient)
      {
        WaitAfterFailure(result.message);
        return OrthancPluginJobStepStatus_Continue;
      }

      failures_ = 0;
      const std::string target = "the rollback to snapshot " + std::to_string(rollback.snapshotId);
      switch (result.status)
      {
        case DeletionStatus::Deleted:
          context_.GetOutbox().RecordRemoval(rollbackId_, item.id, RemovalOutcome::Deleted,
                                             "deleted at the service by " + target, NowMs());
          break;

        case DeletionStatus::NotFound:
          context_.GetOutbox().RecordRemoval(rollbackId_, item.id, RemovalOutcome::NotFound,
                                             "already absent from the service at " + target,
                                             NowMs());
          break;

        default:
          context_.GetOutbox().RecordRemoval(rollbackId_, item.id, RemovalOutcome::Failed,
                                             target + " could not delete it: " + result.message,
                                             NowMs());
          context_.GetLogger().Warning("rollback " + std::to_string(rollbackId_) +
                                       " cannot delete instance " + item.instance.sopInstanceUid +
                                       ": " + result.message);
          break;
      }
    }
    return OrthancPluginJobStepStatus_Continue;
  }
  catch (const std::exception& e)
  {
    // Typically the outbox database: the job tries again, because its progress is safe there.
    WaitAfterFailure(e.what());
    return OrthancPluginJobStepStatus_Continue;
  }
}


OrthancPluginJobStepStatus RollbackJob::Finish()
{
  RollbackRecord rollback;
  context_.GetOutbox().GetRollback(rollback, rollbackId_);
  if (rollback.failed > 0)
  {
    const std::string message = std::to_string(rollback.failed) +
                                " instances could not be deleted at the service; their "
                                "messages in GET /azure-dicom/instances say why";
    context_.GetOutbox().FinishRollback(rollbackId_, RollbackState::Failure, message, NowMs());
    context_.GetLogger().Warning("rollback " + std::to_string(rollbackId_) + " ended: " + message);
    return OrthancPluginJobStepStatus_Failure;
  }

  context_.GetOutbox().FinishRollback(rollbackId_, RollbackState::Success, "", NowMs());
  context_.GetLogger().Warning("rollback " + std::to_string(rollbackId_) +
                               " ended: " + std::to_string(rollback.deleted) +
                               " instances deleted at the "
                               "service, " +
                               std::to_string(rollback.notFound) + " already absent");
  return OrthancPluginJobStepStatus_Success;
}


void RollbackJob::WaitAfterFailure(const std::string& message)
{
  failures_++;
  if (message != lastFailure_)
  {
    context_.GetLogger().Warning("rollback " + std::to_string(rollbackId_) +
                                 " waits and tries again: " + message);
    lastFailure_ = message;
  }
  const unsigned int waitMs = std::min(MAX_WAIT_MS, failures_ * WAIT_PER_FAILURE_MS);
  std::this_thread::sleep_for(std::chrono::milliseconds(waitMs));
}


float RollbackJob::GetProgress()
{
  RollbackRecord rollback;
  try
  {
    if (!context_.GetOutbox().GetRollback(rollback, rollbackId_) || rollback.total == 0)
    {
      return rollback.state == RollbackState::Running ? 0.0f : 1.0f;
    }
  }
  catch (const std::exception&)
  {
    return 0.0f;
  }
  const uint64_t done = rollback.total - rollback.GetRemaining();
  return static_cast<float>(done) / static_cast<float>(rollback.total);
}


const char* RollbackJob::GetContent()
{
  Json::Value content;
  RollbackRecord rollback;
  try
  {
    if (context_.GetOutbox().GetRollback(rollback, rollbackId_))
    {
      content = ToJson(rollback);
      content.removeMember("ID");
      content.removeMember("Job");
    }
  }
  catch (const std::exception& e)
  {
    content["Error"] = e.what();
  }
  content["Rollback"] = std::to_string(rollbackId_);
  if (!claimed_)
  {
    content["Message"] = "another job runs this rollback";
  }
  content_ = WriteJson(content);
  return content_.c_str();
}


const char* RollbackJob::GetSerialized()
{
  Json::Value json;
  json["Rollback"] = std::to_string(rollbackId_);
  serialized_ = WriteJson(json);
  return serialized_.c_str();
}


void RollbackJob::Stop(OrthancPluginJobStopReason reason)
{
  if (reason == OrthancPluginJobStopReason_Canceled && claimed_)
  {
    try
    {
      context_.GetOutbox().FinishRollback(rollbackId_, RollbackState::Canceled,
                                          "canceled in Orthanc's job list", NowMs());
      context_.GetLogger().Warning("rollback " + std::to_string(rollbackId_) +
                                   " canceled: the instances it has not deleted stay at the "
                                   "service");
    }
    catch (const std::exception& e)
    {
      context_.GetLogger().Error(std::string("cannot record the cancellation of a rollback: ") +
                                 e.what());
    }
  }
}
}  // namespace AzureDicom
