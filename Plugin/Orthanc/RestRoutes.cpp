#include "Orthanc/RestRoutes.h"

#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Azure/Preflight.h"
#include "Orthanc/RollbackJob.h"
#include "Orthanc/SyncJob.h"
#include "Sync/OutboxJson.h"
#include "Sync/RequestBodies.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <set>

namespace AzureDicom
{
namespace
{
PluginContext* (*contextGetter)() = nullptr;

const size_t DEFAULT_PAGE_SIZE = 100;
const size_t MAX_PAGE_SIZE = 1000;
const int DEFAULT_JOB_PRIORITY = 0;
const size_t MAX_LABEL_LENGTH = 200;


// The input of a route: the parsed request, and the output to write the response to.
struct RouteRequest
{
  PluginContext& context;
  OrthancPluginRestOutput* output;
  const OrthancPluginHttpRequest* http;

  std::string GetGroup(uint32_t index) const
  {
    return index < http->groupsCount ? http->groups[index] : "";
  }

  // Returns the value of a query parameter, or false when it is absent.
  bool GetQuery(std::string& value, const char* name) const
  {
    for (uint32_t i = 0; i < http->getCount; i++)
    {
      if (std::strcmp(http->getKeys[i], name) == 0)
      {
        value = http->getValues[i];
        return true;
      }
    }
    return false;
  }

  // Parses the body as a JSON object; an empty body is an empty object.
  Json::Value GetJsonBody() const
  {
    return ParseRequestBody(static_cast<const char*>(http->body), http->bodySize);
  }

  void Answer(const Json::Value& value) const
  {
    AnswerJson(context.GetOrthanc(), output, value);
  }
};


using RouteHandler = void (*)(const RouteRequest& request);


// Looks up the resources of "Resources"; throws NotFound for one that does not exist.
std::vector<ResourceReference> LookUpResources(PluginContext& context,
                                               const std::vector<std::string>& ids)
{
  std::vector<ResourceReference> references;
  for (size_t i = 0; i < ids.size(); i++)
  {
    ResourceReference reference;
    if (!LookUpResource(reference, context.GetGateway(), ids[i]))
    {
      throw Exception(ErrorCode::NotFound, "\"Resources\"[" + std::to_string(i) +
                                               "]: no patient, study, series or instance has "
                                               "the ID or UID " +
                                               DescribeJsonValue(Json::Value(ids[i])));
    }
    references.push_back(reference);
  }
  return references;
}


void GetStatus(const RouteRequest& request)
{
  request.Answer(request.context.GetStatus());
}


void GetStatusHistory(const RouteRequest& request)
{
  request.Answer(request.context.GetStatusHistory());
}


size_t ReadPageSize(const RouteRequest& request)
{
  std::string text;
  if (!request.GetQuery(text, "limit"))
  {
    return DEFAULT_PAGE_SIZE;
  }

  char* end = nullptr;
  const unsigned long value = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1 || value > MAX_PAGE_SIZE)
  {
    throw Exception(ErrorCode::BadRequest, "invalid \"limit\" \"" + text + "\": expected an "
                                           "integer from 1 to " + std::to_string(MAX_PAGE_SIZE));
  }
  return value;
}


int64_t ReadSince(const RouteRequest& request)
{
  std::string text;
  if (!request.GetQuery(text, "since"))
  {
    return 0;
  }

  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 0 || errno == ERANGE)
  {
    throw Exception(ErrorCode::BadRequest, "invalid \"since\" \"" + text +
                                               "\": expected the Sequence of the last item seen, "
                                               "an integer from 0 to " +
                                               std::to_string(LLONG_MAX));
  }
  return value;
}


void ListInstances(const RouteRequest& request)
{
  ItemState state;
  bool filtered = false;
  std::string stateName;
  if (request.GetQuery(stateName, "state"))
  {
    if (!ParseItemState(state, stateName))
    {
      throw Exception(ErrorCode::BadRequest,
                      "invalid \"state\" \"" + stateName + "\": expected Pending, Sending, "
                      "Mirrored, AlreadyPresent, Failed, Skipped or RolledBack");
    }
    filtered = true;
  }

  const size_t limit = ReadPageSize(request);
  const std::vector<OutboxItem> items = request.context.GetOutbox().ListItems(
      filtered ? &state : nullptr, ReadSince(request), limit);

  Json::Value answer;
  answer["Items"] = Json::arrayValue;
  for (const OutboxItem& item : items)
  {
    answer["Items"].append(ToJson(item));
  }
  answer["Next"] = items.size() == limit ? Json::Value(Json::Int64(items.back().id))
                                         : Json::Value(Json::nullValue);
  request.Answer(answer);
}


void GetInstance(const RouteRequest& request)
{
  OutboxItem item;
  if (!request.context.GetOutbox().FindItem(item, request.GetGroup(0)))
  {
    throw Exception(ErrorCode::NotFound, "no instance with the Orthanc ID or SOP Instance UID " +
                                             DescribeJsonValue(Json::Value(request.GetGroup(0))) +
                                             " is in the outbox");
  }
  request.Answer(ToJson(item));
}


void GetStudy(const RouteRequest& request)
{
  StudySummary summary;
  if (!request.context.GetOutbox().GetStudySummary(summary, request.GetGroup(0)))
  {
    throw Exception(ErrorCode::NotFound, "no study with the Orthanc ID or Study Instance UID " +
                                             DescribeJsonValue(Json::Value(request.GetGroup(0))) +
                                             " is in the outbox");
  }
  request.Answer(ToJson(summary));
}


void PostSync(const RouteRequest& request)
{
  const SyncRequest sync = ParseSyncRequest(request.GetJsonBody(), DEFAULT_JOB_PRIORITY);

  std::vector<ResourceReference> resources;
  if (!sync.all)
  {
    resources = LookUpResources(request.context, sync.resources);
  }

  const int priority = sync.priority;
  const std::string id =
      SyncJob::Submit(std::make_unique<SyncJob>(request.context, resources), priority);

  Json::Value answer;
  answer["ID"] = id;
  answer["Path"] = "/jobs/" + id;
  request.Answer(answer);
}


// Collects the Orthanc IDs of the instances of each resource.
std::vector<std::string> GetInstanceIds(OrthancGateway& orthanc,
                                        const std::vector<ResourceReference>& resources)
{
  static const char* const routes[] = {"/patients/", "/studies/", "/series/"};

  std::vector<std::string> ids;
  for (const ResourceReference& resource : resources)
  {
    if (resource.level == ResourceLevel::Instance)
    {
      ids.push_back(resource.orthancId);
      continue;
    }

    Json::Value instances;
    const std::string uri =
        routes[static_cast<int>(resource.level)] + resource.orthancId + "/instances";
    if (orthanc.GetJson(instances, uri))
    {
      for (const Json::Value& instance : instances)
      {
        ids.push_back(GetStringMember(instance, "ID"));
      }
    }
  }
  return ids;
}


const char* GetLevelName(ResourceLevel level)
{
  static const char* const names[] = {"Patient", "Study", "Series", "Instance"};
  return names[static_cast<int>(level)];
}


// One word for a badge: Failed wins over Pending, then Conflict, then NotMirrored.
const char* Summarize(const StateCounts& counts, uint64_t notQueued, uint64_t conflicts)
{
  if (counts.Get(ItemState::Failed) > 0)
  {
    return "Failed";
  }
  if (counts.Get(ItemState::Pending) + counts.Get(ItemState::Sending) > 0)
  {
    return "Pending";
  }
  if (conflicts > 0)
  {
    return "Conflict";
  }
  if (notQueued + counts.Get(ItemState::Skipped) + counts.Get(ItemState::RolledBack) > 0)
  {
    return "NotMirrored";
  }
  return "Mirrored";
}


void GetResource(const RouteRequest& request)
{
  ResourceReference resource;
  if (!LookUpResource(resource, request.context.GetGateway(), request.GetGroup(0)))
  {
    throw Exception(ErrorCode::NotFound,
                    "no patient, study, series or instance has the ID or UID " +
                        DescribeJsonValue(Json::Value(request.GetGroup(0))));
  }

  const std::vector<std::string> ids = GetInstanceIds(request.context.GetGateway(), {resource});
  uint64_t notQueued = 0;
  uint64_t bytes = 0;
  uint64_t conflicts = 0;
  const StateCounts counts =
      request.context.GetOutbox().CountInstances(ids, notQueued, bytes, conflicts);

  Json::Value answer;
  answer["Level"] = GetLevelName(resource.level);
  answer["ID"] = resource.orthancId;
  answer["Instances"] = Json::UInt64(ids.size());
  answer["NotQueued"] = Json::UInt64(notQueued);
  answer["Bytes"] = Json::UInt64(bytes);
  answer["Counts"] = ToJson(counts);
  answer["Conflicts"] = Json::UInt64(conflicts);
  answer["Summary"] = Summarize(counts, notQueued, conflicts);
  request.Answer(answer);
}


void PostRetry(const RouteRequest& request)
{
  const RetryRequest retry = ParseRetryRequest(request.GetJsonBody());

  uint64_t requeued = 0;
  Outbox& outbox = request.context.GetOutbox();
  if (retry.byState)
  {
    requeued = outbox.RetryState(retry.state, NowMs());
  }
  else
  {
    const std::vector<ResourceReference> resources =
        LookUpResources(request.context, retry.resources);
    requeued = outbox.RetryInstances(GetInstanceIds(request.context.GetGateway(), resources),
                                     NowMs());
  }

  if (requeued > 0)
  {
    request.context.GetLogger().Info("an administrator queued " + std::to_string(requeued) +
                                     " instances again");
    request.context.GetDispatcher().Wake(requeued);
  }

  Json::Value answer;
  answer["Requeued"] = Json::UInt64(requeued);
  request.Answer(answer);
}


void PostPause(const RouteRequest& request)
{
  CheckKeys(request.GetJsonBody(), {});
  request.context.SetPaused(true);
  request.Answer(request.context.GetStatus());
}


void PostResume(const RouteRequest& request)
{
  CheckKeys(request.GetJsonBody(), {});
  request.context.SetPaused(false);
  request.Answer(request.context.GetStatus());
}


void GetCredentials(const RouteRequest& request)
{
  request.Answer(request.context.GetCredentials()->GetStatus());
}


void PostCredentialsRefresh(const RouteRequest& request)
{
  CheckKeys(request.GetJsonBody(), {});
  Json::Value answer;
  try
  {
    request.context.GetCredentials()->Refresh(NowMs());
    request.context.GetLogger().Info("credentials refreshed by an administrator");
    // Ends a backoff only. A pause that an administrator set, or that a rollback restored,
    // stays until POST /azure-dicom/resume.
    request.context.GetDispatcher().EndWait();
    answer["Refreshed"] = true;
  }
  catch (const std::exception& e)
  {
    // The route worked but the credential failed: the returned status contains the reason.
    request.context.GetLogger().Warning(std::string("refreshing the credentials failed: ") +
                                        e.what());
    answer["Refreshed"] = false;
    answer["Error"] = e.what();
    answer["Hint"] = GetCredentialHint(e.what());
  }
  answer["Credentials"] = request.context.GetCredentials()->GetStatus();

  // A failed refresh is a failure of the upstream service, so scripts see it in the status.
  AnswerJson(request.context.GetOrthanc(), request.output, answer,
             answer["Refreshed"].asBool() ? 200 : 502);
}


void PostCheck(const RouteRequest& request)
{
  CheckKeys(request.GetJsonBody(), {});
  const Json::Value result = RunPreflight(request.context.GetConfiguration(),
                                          *request.context.GetCredentials(), NowMs());
  request.context.GetLogger().Info(std::string("preflight check ") +
                                   (result["Passed"].asBool() ? "passed" : "failed"));
  request.Answer(result);
}


void GetSettings(const RouteRequest& request)
{
  request.Answer(request.context.GetSettings());
}


void PutSettings(const RouteRequest& request)
{
  request.Answer(request.context.ChangeSettings(request.GetJsonBody()));
}


void ListSnapshots(const RouteRequest& request)
{
  Json::Value answer;
  answer["Snapshots"] = Json::arrayValue;
  for (const SnapshotRecord& snapshot : request.context.GetOutbox().ListSnapshots())
  {
    answer["Snapshots"].append(ToJson(snapshot));
  }
  request.Answer(answer);
}


void PostSnapshot(const RouteRequest& request)
{
  const std::string label = ParseSnapshotLabel(request.GetJsonBody(), MAX_LABEL_LENGTH);
  const SnapshotRecord snapshot = request.context.TakeSnapshot(label, "Manual");
  request.Answer(ToJson(snapshot));
}


SnapshotRecord FindSnapshot(const RouteRequest& request)
{
  const std::string id = request.GetGroup(0);
  SnapshotRecord snapshot;
  const bool isNumber = !id.empty() && id.size() < 19 &&
                        id.find_first_not_of("0123456789") == std::string::npos;
  if (!isNumber || !request.context.GetOutbox().GetSnapshot(snapshot, std::stoll(id)))
  {
    throw Exception(ErrorCode::NotFound, "no snapshot has the ID " +
                                             DescribeJsonValue(Json::Value(id)) +
                                             "; GET /azure-dicom/snapshots lists them");
  }
  return snapshot;
}


void GetSnapshot(const RouteRequest& request)
{
  request.Answer(ToJson(FindSnapshot(request)));
}


void PostRollback(const RouteRequest& request)
{
  const Json::Value body = request.GetJsonBody();
  const SnapshotRecord snapshot = FindSnapshot(request);
  const RollbackRequest rollback = ParseRollbackRequest(body, std::to_string(snapshot.id));
  if (rollback.dryRun)
  {
    request.Answer(PlanRollback(request.context, snapshot, rollback.deleteFromService));
  }
  else
  {
    request.Answer(RunRollback(request.context, snapshot, rollback.deleteFromService));
  }
}


// Runs a handler behind the checks every route shares: the method, a running plugin, and
// errors turned into JSON responses.
template <RouteHandler onGet, RouteHandler onPost, RouteHandler onPut>
OrthancPluginErrorCode Serve(OrthancPluginRestOutput* output, const char* /* url */,
                             const OrthancPluginHttpRequest* http)
{
  PluginContext* context = contextGetter();
  if (context == nullptr)
  {
    return OrthancPluginErrorCode_UnknownResource;
  }

  OrthancPluginContext* orthanc = context->GetOrthanc();
  RouteHandler handler = nullptr;
  switch (http->method)
  {
    case OrthancPluginHttpMethod_Get:
      handler = onGet;
      break;
    case OrthancPluginHttpMethod_Post:
      handler = onPost;
      break;
    case OrthancPluginHttpMethod_Put:
      handler = onPut;
      break;
    default:
      break;
  }

  if (handler == nullptr)
  {
    std::string allowed;
    for (const auto& method : {std::make_pair(onGet, "GET"), std::make_pair(onPost, "POST"),
                               std::make_pair(onPut, "PUT")})
    {
      if (method.first != nullptr)
      {
        allowed += (allowed.empty() ? "" : ",") + std::string(method.second);
      }
    }
    OrthancPluginSendMethodNotAllowed(orthanc, output, allowed.c_str());
    return OrthancPluginErrorCode_Success;
  }

  try
  {
    handler(RouteRequest{*context, output, http});
  }
  catch (const Exception& e)
  {
    AnswerError(orthanc, output, static_cast<uint16_t>(e.GetHttpStatus()), e.what());
  }
  catch (const std::exception& e)
  {
    context->GetLogger().Error(std::string("a REST route failed: ") + e.what());
    AnswerError(orthanc, output, 500, e.what());
  }
  return OrthancPluginErrorCode_Success;
}
}  // namespace


void RegisterRestRoutes(OrthancPluginContext* orthanc, PluginContext* (*getContext)())
{
  contextGetter = getContext;

  // The NoLock variant: the routes are thread-safe, and with the locking one every call would
  // wait for every other plugin route.
  struct Route
  {
    const char* pattern;
    OrthancPluginRestCallback callback;
  };
  const Route routes[] = {
      {"/azure-dicom/status", Serve<GetStatus, nullptr, nullptr>},
      {"/azure-dicom/status/history", Serve<GetStatusHistory, nullptr, nullptr>},
      {"/azure-dicom/instances", Serve<ListInstances, nullptr, nullptr>},
      {"/azure-dicom/instances/([^/]+)", Serve<GetInstance, nullptr, nullptr>},
      {"/azure-dicom/studies/([^/]+)", Serve<GetStudy, nullptr, nullptr>},
      {"/azure-dicom/resources/([^/]+)", Serve<GetResource, nullptr, nullptr>},
      {"/azure-dicom/sync", Serve<nullptr, PostSync, nullptr>},
      {"/azure-dicom/retry", Serve<nullptr, PostRetry, nullptr>},
      {"/azure-dicom/pause", Serve<nullptr, PostPause, nullptr>},
      {"/azure-dicom/resume", Serve<nullptr, PostResume, nullptr>},
      {"/azure-dicom/credentials", Serve<GetCredentials, nullptr, nullptr>},
      {"/azure-dicom/credentials/refresh",
       Serve<nullptr, PostCredentialsRefresh, nullptr>},
      {"/azure-dicom/check", Serve<nullptr, PostCheck, nullptr>},
      {"/azure-dicom/settings", Serve<GetSettings, nullptr, PutSettings>},
      {"/azure-dicom/snapshots", Serve<ListSnapshots, PostSnapshot, nullptr>},
      {"/azure-dicom/snapshots/([^/]+)", Serve<GetSnapshot, nullptr, nullptr>},
      {"/azure-dicom/snapshots/([^/]+)/rollback", Serve<nullptr, PostRollback, nullptr>},
  };

  for (const Route& route : routes)
  {
    OrthancPluginRegisterRestCallbackNoLock(orthanc, route.pattern, route.callback);
  }
}
}  // namespace AzureDicom
