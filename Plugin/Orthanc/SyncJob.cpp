#include "Orthanc/SyncJob.h"

#include "Common/Clock.h"
#include "Common/Exception.h"

#include <json/json.h>

namespace AzureDicom
{
namespace
{
const char* const JOB_TYPE = "AzureDicomSync";

const char* GetLevelRoute(ResourceLevel level)
{
  switch (level)
  {
    case ResourceLevel::Patient:
      return "/patients/";
    case ResourceLevel::Study:
      return "/studies/";
    case ResourceLevel::Series:
      return "/series/";
    default:
      return "/instances/";
  }
}


bool ParseLevel(ResourceLevel& level, const std::string& type)
{
  if (type == "Patient")
  {
    level = ResourceLevel::Patient;
  }
  else if (type == "Study")
  {
    level = ResourceLevel::Study;
  }
  else if (type == "Series")
  {
    level = ResourceLevel::Series;
  }
  else if (type == "Instance")
  {
    level = ResourceLevel::Instance;
  }
  else
  {
    return false;
  }
  return true;
}
}  // namespace


bool LookUpResource(ResourceReference& resource, OrthancGateway& orthanc, const std::string& id)
{
  // Orthanc IDs are SHA-1 digests in five dash-separated groups; DICOM UIDs are digits and dots.
  const bool looksLikeUid = id.find_first_not_of("0123456789.") == std::string::npos;
  if (!looksLikeUid && id.find('/') == std::string::npos)
  {
    for (ResourceLevel level : {ResourceLevel::Instance, ResourceLevel::Series, ResourceLevel::Study,
                                ResourceLevel::Patient})
    {
      Json::Value answer;
      if (orthanc.GetJson(answer, GetLevelRoute(level) + id))
      {
        resource.level = level;
        resource.orthancId = id;
        return true;
      }
    }
  }

  Json::Value matches;
  if (!orthanc.PostJson(matches, "/tools/lookup", id) || !matches.isArray())
  {
    return false;
  }

  for (const Json::Value& match : matches)
  {
    if (ParseLevel(resource.level, GetStringMember(match, "Type")))
    {
      resource.orthancId = GetStringMember(match, "ID");
      return !resource.orthancId.empty();
    }
  }
  return false;
}


SyncJob::SyncJob(PluginContext& context, const std::vector<ResourceReference>& resources) :
    context_(context),
    resolver_(context.GetGateway()),
    resources_(resources),
    wholeArchive_(resources.empty())
{
  resolver_.SetStorageDirectory(context.GetStorageDirectory());
  Reset();
}


uint64_t SyncJob::CountInstances(OrthancGateway& orthanc, const ResourceReference& resource)
{
  if (resource.level == ResourceLevel::Instance)
  {
    return 1;
  }

  Json::Value statistics;
  if (orthanc.GetJson(statistics, GetLevelRoute(resource.level) + resource.orthancId +
                                      "/statistics") &&
      statistics["CountInstances"].isUInt64())
  {
    return statistics["CountInstances"].asUInt64();
  }
  return 0;
}


void SyncJob::Reset()
{
  nextPage_ = std::future<ArchivePage>();  // waits until a page being listed is done, then drops it
  toExpand_.assign(resources_.begin(), resources_.end());
  toQueue_.clear();
  archiveCursor_ = 0;
  processed_ = 0;
  queued_ = QueueResult();
  missing_ = 0;
  total_ = 0;

  if (wholeArchive_)
  {
    Json::Value statistics;
    if (context_.GetGateway().GetJson(statistics, "/statistics") &&
        statistics["CountInstances"].isUInt64())
    {
      total_ = statistics["CountInstances"].asUInt64();
    }
  }
  else
  {
    for (const ResourceReference& resource : resources_)
    {
      total_ += CountInstances(context_.GetGateway(), resource);
    }
  }
}


void SyncJob::QueueInstances(const std::vector<std::string>& orthancIds)
{
  std::vector<NewInstance> instances;
  instances.reserve(orthancIds.size());
  for (const std::string& id : orthancIds)
  {
    NewInstance instance;
    if (resolver_.Resolve(instance, id))
    {
      instances.push_back(instance);
    }
    else
    {
      missing_++;
    }
  }
  QueueResolved(instances, orthancIds.size());
}


void SyncJob::QueueResolved(const std::vector<NewInstance>& instances, size_t processed)
{
  // Sending an explicit resource again returns its Failed items to the queue; the whole
  // archive only adds what the outbox does not have yet.
  const QueueResult result = context_.GetOutbox().Queue(
      instances, wholeArchive_ ? QueueMode::InsertMissing : QueueMode::RequeueFailed, NowMs());
  queued_.inserted += result.inserted;
  queued_.requeued += result.requeued;
  queued_.unchanged += result.unchanged;
  processed_ += processed;

  if (result.inserted + result.requeued > 0)
  {
    context_.GetDispatcher().Wake(result.inserted + result.requeued);
  }
}


void SyncJob::ExpandNextResource()
{
  const ResourceReference resource = toExpand_.front();
  toExpand_.pop_front();

  if (resource.level == ResourceLevel::Instance)
  {
    toQueue_.push_back(resource.orthancId);
    return;
  }

  Json::Value answer;
  if (!context_.GetGateway().GetJson(answer, GetLevelRoute(resource.level) + resource.orthancId))
  {
    return;  // deleted since the job was created
  }

  switch (resource.level)
  {
    case ResourceLevel::Patient:
      for (const Json::Value& id : answer["Studies"])
      {
        toExpand_.push_back({ResourceLevel::Study, id.asString()});
      }
      break;

    case ResourceLevel::Study:
      for (const Json::Value& id : answer["Series"])
      {
        toExpand_.push_back({ResourceLevel::Series, id.asString()});
      }
      break;

    default:
      for (const Json::Value& id : answer["Instances"])
      {
        toQueue_.push_back(id.asString());
      }
      break;
  }
}


std::string SyncJob::GetArchivePageUri(uint64_t since, bool expand)
{
  return std::string("/instances?") + (expand ? "expand&" : "") + "since=" +
         std::to_string(since) + "&limit=" + std::to_string(INSTANCES_PER_STEP);
}


Json::Value SyncJob::ListArchivePage(const std::string& uri)
{
  Json::Value page;
  if (!context_.GetGateway().GetJson(page, uri) || !page.isArray())
  {
    throw Exception(ErrorCode::ProtocolError, "Orthanc returned no list of instances to " + uri);
  }
  return page;
}


SyncJob::ArchivePage SyncJob::ReadArchivePage(uint64_t since)
{
  ArchivePage result;

  // Where the resolver reads the identifiers from the files, Orthanc only lists the IDs.
  // Otherwise one request returns a page of instances with their tags and sizes ("expand"),
  // instead of one request per instance.
  const bool expand = !resolver_.ReadsFiles();
  const std::string uri = GetArchivePageUri(since, expand);
  const Json::Value page = ListArchivePage(uri);
  result.listed = page.size();
  result.instances.reserve(page.size());
  for (const Json::Value& entry : page)
  {
    std::string id;
    if (expand)
    {
      id = GetStringMember(entry, "ID");
    }
    else if (entry.isString())
    {
      id = entry.asString();
    }
    if (id.empty())
    {
      throw Exception(ErrorCode::ProtocolError,
                      "Orthanc returned an instance without an ID to " + uri);
    }
    NewInstance instance;
    if (expand ? resolver_.Resolve(instance, id, entry) : resolver_.Resolve(instance, id))
    {
      result.instances.push_back(instance);
    }
    else
    {
      result.missing++;
    }
  }
  return result;
}


bool SyncJob::StepWholeArchive()
{
  // The next page is listed and resolved while this step queues the current one, because that
  // (in Orthanc's index and files) and queueing (in the outbox) do not wait for each other.
  ArchivePage page = nextPage_.valid() ? nextPage_.get() : ReadArchivePage(archiveCursor_);
  const bool last = page.listed < INSTANCES_PER_STEP;
  if (!last)
  {
    const uint64_t since = archiveCursor_ + page.listed;
    nextPage_ = std::async(std::launch::async, [this, since] { return ReadArchivePage(since); });
  }

  missing_ += page.missing;
  QueueResolved(page.instances, page.listed);
  archiveCursor_ += page.listed;
  return last;
}


OrthancPluginJobStepStatus SyncJob::Step()
{
  try
  {
    if (wholeArchive_)
    {
      return StepWholeArchive() ? OrthancPluginJobStepStatus_Success
                                : OrthancPluginJobStepStatus_Continue;
    }

    while (toQueue_.size() < INSTANCES_PER_STEP && !toExpand_.empty())
    {
      ExpandNextResource();
    }

    std::vector<std::string> page;
    while (!toQueue_.empty() && page.size() < INSTANCES_PER_STEP)
    {
      page.push_back(toQueue_.front());
      toQueue_.pop_front();
    }
    QueueInstances(page);

    return (toQueue_.empty() && toExpand_.empty()) ? OrthancPluginJobStepStatus_Success
                                                   : OrthancPluginJobStepStatus_Continue;
  }
  catch (const std::exception& e)
  {
    context_.GetLogger().Error(std::string("the back-fill job failed: ") + e.what());
    return OrthancPluginJobStepStatus_Failure;
  }
}


float SyncJob::GetProgress() const
{
  if (total_ == 0)
  {
    return 0;
  }
  return std::min(1.0f, static_cast<float>(processed_) / static_cast<float>(total_));
}


const char* SyncJob::GetContent()
{
  Json::Value content;
  content["Resources"] = wholeArchive_ ? Json::Value("All") : Json::Value(Json::UInt64(resources_.size()));
  content["Total"] = Json::UInt64(total_);
  content["Processed"] = Json::UInt64(processed_);
  content["Queued"] = Json::UInt64(queued_.inserted);
  content["Requeued"] = Json::UInt64(queued_.requeued);
  content["AlreadyQueued"] = Json::UInt64(queued_.unchanged);
  content["Missing"] = Json::UInt64(missing_);

  Json::StreamWriterBuilder builder;
  builder["indentation"] = "";
  content_ = Json::writeString(builder, content);
  return content_.c_str();
}


std::string SyncJob::Submit(std::unique_ptr<SyncJob> job, int priority)
{
  OrthancPluginContext* orthanc = job->context_.GetOrthanc();

  // The C API takes plain functions; each forwards to the SyncJob behind the void pointer.
  OrthancPluginJob* handle = OrthancPluginCreateJob(
      orthanc, job.get(), [](void* self) { delete static_cast<SyncJob*>(self); }, JOB_TYPE,
      [](void* self) { return static_cast<SyncJob*>(self)->GetProgress(); },
      [](void* self) { return static_cast<SyncJob*>(self)->GetContent(); },
      [](void*) -> const char* { return nullptr; },  // not saved: a restart needs a new request
      [](void* self) { return static_cast<SyncJob*>(self)->Step(); },
      [](void*, OrthancPluginJobStopReason) { return OrthancPluginErrorCode_Success; },
      [](void* self) {
        static_cast<SyncJob*>(self)->Reset();
        return OrthancPluginErrorCode_Success;
      });
  if (handle == nullptr)
  {
    throw Exception(ErrorCode::InternalError, "Orthanc could not create the back-fill job");
  }
  job.release();  // owned by the job handle now, freed through the finalize function

  char* id = OrthancPluginSubmitJob(orthanc, handle, priority);
  if (id == nullptr)
  {
    throw Exception(ErrorCode::InternalError, "Orthanc could not submit the back-fill job");
  }
  const std::string result(id);
  OrthancPluginFreeString(orthanc, id);
  return result;
}
}  // namespace AzureDicom
