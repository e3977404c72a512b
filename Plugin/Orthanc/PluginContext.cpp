#include "Orthanc/PluginContext.h"

#include "Azure/StowClient.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Common/Json.h"
#include "Common/ThreadPriority.h"
#include "Orthanc/RollbackJob.h"
#include "Sync/Database.h"
#include "Sync/OutboxJson.h"
#include "Sync/RequestBodies.h"
#include "Sync/RuntimeSettings.h"

namespace AzureDicom
{
namespace
{
const char* const RUNTIME_SETTINGS_PROPERTY = "RuntimeSettings";
const char* const PAUSED_PROPERTY = "Paused";

// The windows of the dashboard's request tiles.
const unsigned int REQUEST_WINDOW_SHORT_SECONDS = 5 * 60;
const unsigned int REQUEST_WINDOW_LONG_SECONDS = 60 * 60;


DispatcherSettings GetDispatcherSettings(const Configuration& configuration,
                                         const CredentialManager& credentials)
{
  DispatcherSettings settings;
  settings.workers = configuration.workers;
  settings.maxInstancesPerRequest = configuration.maxInstancesPerRequest;
  settings.maxRequestBytes = configuration.GetMaxRequestBytes();
  settings.leaseSeconds = configuration.leaseSeconds;
  settings.retry = configuration.retry;
  settings.destination = configuration.GetStowUrl();
  settings.target = configuration.GetDestination();
  settings.onConflict = configuration.onConflict;
  settings.principal = credentials.GetPrincipal();
  return settings;
}


// Reads "Paused" of a settings change: true or false, also as a string as in the configuration
// file, or null for the default (not paused).
bool ReadPausedValue(const Json::Value& value)
{
  bool paused = false;
  if (value.isNull() || ReadBoolean(value, paused))
  {
    return paused;
  }

  throw Exception(ErrorCode::BadRequest, "invalid value " + DescribeJsonValue(value) +
                                             " for \"Paused\": expected true or false, or null "
                                             "for not paused (nothing was changed)");
}


bool PinsOtherSecretVersion(const Configuration& current, const Configuration& next)
{
  const auto& currentVault = current.credentials.keyVault;
  const auto& nextVault = next.credentials.keyVault;
  return currentVault && nextVault && currentVault->secretVersion != nextVault->secretVersion;
}
}  // namespace


PluginContext::PluginContext(OrthancPluginContext* orthanc, const Json::Value& fileSection,
                             const std::string& databasePath, const std::string& nodeName) :
    orthanc_(orthanc),
    fileSection_(fileSection),
    databasePath_(databasePath),
    logger_(orthanc),
    gateway_(orthanc)
{
  try
  {
    outbox_ = std::make_unique<Outbox>(databasePath, nodeName);
  }
  catch (const Exception& e)
  {
    // The messages of the PostgreSQL outbox name the connection string without its password.
    const std::string expected =
        IsPostgreSqlConnectionString(databasePath)
            ? "; expected a PostgreSQL database that this Orthanc can reach, such as "
              "postgresql://user:password@host:5432/orthanc"
            : "; expected the path of a writable SQLite file, or \"\" for one in Orthanc's "
              "StorageDirectory";
    throw Exception(ErrorCode::BadConfiguration,
                    std::string("AzureDicom.Database: ") + e.what() + expected);
  }

  LoadRuntimeSettings();

  credentials_ = std::make_shared<CredentialManager>(configuration_.credentials,
                                                     configuration_.tls, &logger_);
  dispatcher_ = std::make_unique<Dispatcher>(*outbox_, gateway_, logger_,
                                             GetDispatcherSettings(configuration_, *credentials_),
                                             MakeSenderFactory(configuration_, credentials_));
  if (paused_)
  {
    dispatcher_->Pause();
  }

  deletions_ =
      std::make_unique<DeletionWorker>(*outbox_, logger_, configuration_.retry,
                                       MakeSenderFactory(configuration_, credentials_), &gateway_);

  dispatcher_->SetStoredFileCache(&storedFiles_);
  Dispatcher* dispatcher = dispatcher_.get();
  follower_ = std::make_unique<ChangeFollower>(gateway_, *outbox_, logger_,
                                               [dispatcher]() { dispatcher->Wake(); });
  follower_->SetIngestionMonitor(&dispatcher_->GetIngestionMonitor());
  follower_->SetStoredInstanceCache(&storedInstances_);
  election_ = std::make_unique<FollowerElection>(*outbox_, *follower_, logger_);
}


void PluginContext::LoadRuntimeSettings()
{
  std::string error;
  const std::string text = outbox_->GetProperty(RUNTIME_SETTINGS_PROPERTY, "{}");
  if (!ParseJson(overrides_, error, text.data(), text.size()) || !overrides_.isObject())
  {
    overrides_ = Json::Value(Json::objectValue);
  }
  paused_ = outbox_->GetProperty(PAUSED_PROPERTY, "false") == "true";

  try
  {
    configuration_ = ParseConfiguration(MergeSettings(fileSection_, overrides_));
  }
  catch (const Exception& e)
  {
    // The file changed so that a stored runtime value no longer fits: the file wins.
    logger_.Warning(std::string("the runtime settings stored in the outbox do not fit the "
                                "configuration file, which is used alone: ") +
                    e.what());
    overrides_ = Json::Value(Json::objectValue);
    configuration_ = ParseConfiguration(fileSection_);
  }

  if (!overrides_.empty())
  {
    const Json::Value flat = FlattenOverrides(overrides_);
    std::string names;
    for (const std::string& key : flat.getMemberNames())
    {
      names += (names.empty() ? "" : ", ") + key;
    }
    logger_.Warning("runtime settings changed through the REST API apply over the "
                    "configuration file: " + names + " (GET /azure-dicom/settings shows them)");
  }
  if (paused_)
  {
    logger_.Warning("sending is paused, as an administrator left it (POST /azure-dicom/resume)");
  }
}


Dispatcher::SenderFactory PluginContext::MakeSenderFactory(
    const Configuration& configuration, const std::shared_ptr<CredentialManager>& credentials)
{
  const std::string stowUrl = configuration.GetStowUrl();
  const TlsSettings tls = configuration.tls;
  const unsigned int timeout = configuration.requestTimeoutSeconds;
  std::shared_ptr<TokenCache> tokens = credentials->GetTokens();
  return [stowUrl, tls, timeout, tokens]() {
    return std::make_unique<StowClient>(stowUrl, tls, timeout, tokens);
  };
}


Configuration PluginContext::GetConfiguration()
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  return configuration_;
}


std::shared_ptr<CredentialManager> PluginContext::GetCredentials()
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  return credentials_;
}


std::unique_ptr<IStowSender> PluginContext::CreateSender()
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  return MakeSenderFactory(configuration_, credentials_)();
}


PluginContext::~PluginContext()
{
  Stop();
}


void PluginContext::Start()
{
  HttpClient::SetAllAborted(false);

  // A Sending item of this node at start-up was claimed by a worker that died with the previous
  // process. Other nodes' items keep their leases.
  const uint64_t released = outbox_->ReleaseAllLeases(NowMs());
  if (released > 0)
  {
    logger_.Warning(std::to_string(released) +
                    " instances were being sent when Orthanc stopped: they are queued again");
  }

  if (!GetConfiguration().mirrorDeletes)
  {
    // Requests of a run with MirrorDeletes true would otherwise keep their items from being sent.
    const uint64_t dropped = outbox_->DropDeletionRequests(NowMs());
    if (dropped > 0)
    {
      logger_.Warning(std::to_string(dropped) +
                      " deletions at the service that a run with MirrorDeletes true requested "
                      "are given up, because MirrorDeletes is false: those copies stay at the "
                      "service");
    }
  }

  election_->Start();
  dispatcher_->Start();
  if (GetConfiguration().mirrorDeletes)
  {
    deletions_->Start();
  }
  ResumeRollbacks();

  std::lock_guard<std::mutex> lock(mutex_);
  if (!monitor_.joinable())
  {
    stopping_ = false;
    monitor_ = std::thread(&PluginContext::RunMonitor, this);
  }
}


void PluginContext::Stop()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  HttpClient::SetAllAborted(true);
  stopMonitor_.notify_all();
  if (monitor_.joinable())
  {
    monitor_.join();
  }

  election_->Stop();
  follower_->Stop();
  dispatcher_->Stop();
  deletions_->Stop();
}


void PluginContext::RunMonitor()
{
  NameCurrentThread("azure-monitor");
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_)
  {
    lock.unlock();
    try
    {
      UpdateMetrics();
    }
    catch (const std::exception& e)
    {
      logger_.Warning(std::string("cannot update the metrics: ") + e.what());
    }

    // After the metrics, because a full disk or a lost database fails these writes first.
    std::string nodeError;
    try
    {
      outbox_->RecordHeartbeat(NowMs());
      if (outbox_->IsShared())
      {
        LoadSharedSettings();
      }
    }
    catch (const std::exception& e)
    {
      nodeError = e.what();
    }

    // Logged once per distinct error: the timer runs every few seconds.
    if (nodeError != lastNodeError_ && !nodeError.empty())
    {
      logger_.Warning("cannot record this node in the outbox: " + nodeError);
    }
    lastNodeError_ = nodeError;

    // Reads the Key Vault secret again once RefreshSeconds have passed, even while the token
    // made with it is still valid, so that the status shows a rotation or a revoked access.
    std::shared_ptr<SecretProvider> secrets = GetCredentials()->GetSecretProvider();
    if (secrets)
    {
      std::string error;
      try
      {
        secrets->GetSecret(NowMs());
      }
      catch (const std::exception& e)
      {
        error = e.what();
      }

      // Logged once per distinct error: the timer runs every few seconds.
      if (error != lastSecretError_)
      {
        if (error.empty())
        {
          logger_.Warning("the Key Vault secret can be read again");
        }
        else
        {
          logger_.Warning("cannot read the Key Vault secret: " + error);
        }
        lastSecretError_ = error;
      }
    }
    lock.lock();
    stopMonitor_.wait_for(lock, std::chrono::milliseconds(METRICS_INTERVAL_MS),
                          [this] { return stopping_; });
  }
}


void PluginContext::UpdateMetrics()
{
  const StateCounts counts = outbox_->CountByState();
  const DispatcherStatus status = dispatcher_->GetStatus();

  StatusSample sample;
  sample.timeMs = NowMs();
  sample.counts = counts;
  sample.sentInstances = status.instances;
  sample.sentBytes = status.bytes;
  history_.Add(sample);

  static const char* const names[ITEM_STATE_COUNT] = {
      "azure_dicom_pending", "azure_dicom_sending", "azure_dicom_mirrored",
      "azure_dicom_already_present", "azure_dicom_failed", "azure_dicom_skipped",
      "azure_dicom_rolled_back"};
  for (unsigned int i = 0; i < ITEM_STATE_COUNT; i++)
  {
    OrthancPluginSetMetricsValue(orthanc_, names[i],
                                 static_cast<float>(counts.Get(static_cast<ItemState>(i))),
                                 OrthancPluginMetricsType_Default);
  }

  // NOTE: Orthanc 1.10 publishes metrics as 32-bit floats, so totals above 16.7 million lose
  // their last digits; the REST status has the exact values.
  OrthancPluginSetMetricsValue(orthanc_, "azure_dicom_sent_instances",
                               static_cast<float>(status.instances),
                               OrthancPluginMetricsType_Default);
  OrthancPluginSetMetricsValue(orthanc_, "azure_dicom_sent_bytes",
                               static_cast<float>(status.bytes), OrthancPluginMetricsType_Default);
  OrthancPluginSetMetricsValue(orthanc_, "azure_dicom_requests",
                               static_cast<float>(status.requests),
                               OrthancPluginMetricsType_Default);
  OrthancPluginSetMetricsValue(orthanc_, "azure_dicom_request_latency_ms",
                               static_cast<float>(status.lastLatencyMs),
                               OrthancPluginMetricsType_Timer);
  OrthancPluginSetMetricsValue(orthanc_, "azure_dicom_paused", status.paused ? 1.0f : 0.0f,
                               OrthancPluginMetricsType_Default);
  OrthancPluginSetMetricsValue(orthanc_, "azure_dicom_waiting",
                               status.state == "Waiting" ? 1.0f : 0.0f,
                               OrthancPluginMetricsType_Default);
  OrthancPluginSetMetricsValue(orthanc_, "azure_dicom_queueing_failed",
                               follower_->GetLastError().empty() ? 0.0f : 1.0f,
                               OrthancPluginMetricsType_Default);
}


void PluginContext::AddOutboxStatus(Json::Value& status, int64_t now)
{
  status["Counts"] = ToJson(outbox_->CountByState());

  const int64_t oldest = outbox_->GetOldestPendingTime();
  status["OldestPendingAgeSeconds"] = oldest == 0 ? 0.0 : (now - oldest) / 1000.0;

  status["Conflicts"] = Json::UInt64(outbox_->CountConflicts());
  status["Deletes"]["Pending"] = Json::UInt64(outbox_->CountDeletionRequests());

  RollbackRecord rollback;
  status["Rollback"] =
      outbox_->GetLastRollback(rollback) ? ToJson(rollback) : Json::Value(Json::nullValue);

  status["Follower"]["Sequence"] = Json::Int64(outbox_->GetFollowerSequence());

  status["Nodes"] = Json::arrayValue;
  for (const NodeRecord& node : outbox_->ListNodes())
  {
    Json::Value entry;
    entry["Name"] = node.name;
    entry["Claimed"] = Json::UInt64(node.claimed);
    entry["Sent"] = Json::UInt64(node.sent);
    entry["LastSeen"] = FormatIsoTime(node.lastSeen);
    status["Nodes"].append(entry);
  }
}


Json::Value PluginContext::GetStatus()
{
  const int64_t now = NowMs();
  const Configuration configuration = GetConfiguration();
  const DispatcherStatus dispatcher = dispatcher_->GetStatus();

  // While the database cannot be read (a PostgreSQL server restarts), the status shows the last
  // values read, with the error, so that the dashboard keeps working.
  Json::Value outbox;
  std::string databaseError;
  try
  {
    AddOutboxStatus(outbox, now);
    std::lock_guard<std::mutex> lock(statusMutex_);
    lastOutboxStatus_ = outbox;
  }
  catch (const Exception& e)
  {
    if (e.GetCode() != ErrorCode::DatabaseError)
    {
      throw;
    }
    databaseError = e.what();
    std::lock_guard<std::mutex> lock(statusMutex_);
    outbox = lastOutboxStatus_;
  }

  // New instances that cannot be queued (outbox disk full or locked) stop the mirror as surely
  // as a destination error does, even while the dispatcher has nothing to send.
  const std::string followerError = follower_->GetLastError();
  const ChangeFollower::Failure followerFailure = follower_->GetLastFailure();
  const bool followerFailing = !followerError.empty() && dispatcher.state == "Running";

  Json::Value status;
  status["Enabled"] = true;
  status["State"] = followerFailing ? "Waiting" : dispatcher.state;
  status["Paused"] = dispatcher.paused;  // by an administrator; State shows a wait
  status["PauseReason"] =
      followerFailing ? "new instances cannot be queued: " + followerError : dispatcher.pauseReason;
  status["WaitUntil"] = ToJsonTime(dispatcher.waitUntil);
  status["Counts"] = outbox.isMember("Counts") ? outbox["Counts"] : ToJson(StateCounts());
  status["OldestPendingAgeSeconds"] = outbox["OldestPendingAgeSeconds"].asDouble();

  status["Throughput"]["InstancesPerSecond"] = dispatcher.instancesPerSecond;
  status["Throughput"]["MegabytesPerSecond"] = dispatcher.megabytesPerSecond;
  status["Sent"]["Requests"] = Json::UInt64(dispatcher.requests);
  status["Sent"]["Instances"] = Json::UInt64(dispatcher.instances);
  status["Sent"]["Bytes"] = Json::UInt64(dispatcher.bytes);
  status["Sent"]["LastLatencyMs"] = dispatcher.lastLatencyMs;

  if (!followerError.empty())
  {
    status["LastError"]["Time"] = FormatIsoTime(now);
    status["LastError"]["Message"] = "new instances cannot be queued: " + followerError;
    status["LastError"]["StatusCode"] = 0;
  }
  else if (!databaseError.empty())
  {
    status["LastError"]["Time"] = FormatIsoTime(now);
    status["LastError"]["Message"] = databaseError;
    status["LastError"]["StatusCode"] = 0;
  }
  else if (dispatcher.lastErrorTime == 0 && followerFailure.timeMs == 0)
  {
    status["LastError"] = Json::nullValue;
  }
  else if (followerFailure.timeMs > dispatcher.lastErrorTime)
  {
    // The follower has recovered. Its error stays until a newer one, like the workers' errors,
    // so that a status read after a short outage still shows it.
    status["LastError"]["Time"] = FormatIsoTime(followerFailure.timeMs);
    status["LastError"]["Message"] =
        "new instances could not be queued: " + followerFailure.message;
    status["LastError"]["StatusCode"] = 0;
  }
  else
  {
    status["LastError"]["Time"] = FormatIsoTime(dispatcher.lastErrorTime);
    status["LastError"]["Message"] = dispatcher.lastError;
    status["LastError"]["StatusCode"] = dispatcher.lastErrorStatus;
  }

  status["Destination"] = ToJson(configuration.GetDestination());
  status["Destination"]["StowUrl"] = configuration.GetStowUrl();

  status["Credentials"] = GetCredentials()->GetStatus();
  status["Conflicts"] = outbox["Conflicts"].asUInt64();

  const DeletionStatusCounts deletions = deletions_->GetStatus();
  status["Deletes"]["Enabled"] = configuration.mirrorDeletes;
  status["Deletes"]["Pending"] = outbox["Deletes"]["Pending"].asUInt64();
  status["Deletes"]["Done"] = Json::UInt64(deletions.done);
  status["Deletes"]["LastError"] = deletions.lastError;

  status["Rollback"] = outbox["Rollback"];

  status["Follower"]["Sequence"] =
      outbox["Follower"].isMember("Sequence") ? outbox["Follower"]["Sequence"] : Json::Int64(-1);
  status["Follower"]["LastError"] = followerError;
  status["Follower"]["Active"] = election_->IsFollowing();
  status["Workers"] = configuration.workers;
  status["ActiveWorkers"] = dispatcher.activeWorkers;

  status["Node"] = outbox_->GetNodeName();
  status["Nodes"] = outbox.isMember("Nodes") ? outbox["Nodes"] : Json::Value(Json::arrayValue);

  // The connection error stays until a reconnection succeeds, also between two status reads.
  std::string connectionError = outbox_->GetConnectionError();
  if (connectionError.empty())
  {
    connectionError = databaseError;
  }
  status["Database"]["Type"] = outbox_->IsShared() ? "PostgreSQL" : "SQLite";
  status["Database"]["Connected"] = connectionError.empty();
  status["Database"]["LastError"] = connectionError;
  return status;
}
}  // namespace AzureDicom


namespace AzureDicom
{
Json::Value PluginContext::GetStatusHistory()
{
  const int64_t now = NowMs();

  Json::Value answer;
  answer["IntervalSeconds"] = StatusHistory::INTERVAL_SECONDS;
  answer["Samples"] = Json::arrayValue;
  for (const StatusSample& sample : history_.Get(now))
  {
    Json::Value entry;
    entry["Time"] = FormatIsoTime(sample.timeMs);
    entry["Counts"] = ToJson(sample.counts);
    entry["SentInstances"] = Json::UInt64(sample.sentInstances);
    entry["SentBytes"] = Json::UInt64(sample.sentBytes);
    answer["Samples"].append(entry);
  }

  for (const auto& window : {std::make_pair(REQUEST_WINDOW_SHORT_SECONDS, "Last5Minutes"),
                             std::make_pair(REQUEST_WINDOW_LONG_SECONDS, "Last60Minutes")})
  {
    const RequestSummary summary = dispatcher_->SummarizeRequests(now, window.first);
    Json::Value tile;
    tile["WindowSeconds"] = summary.windowSeconds;
    tile["Requests"] = Json::UInt64(summary.requests);
    tile["RequestsPerSecond"] = summary.requestsPerSecond;
    tile["P95LatencyMs"] = summary.p95LatencyMs;
    tile["Errors"] = Json::UInt64(summary.errors);
    tile["ErrorRate"] = summary.errorRate;
    tile["ErrorsByStatus"] = Json::objectValue;
    for (const auto& entry : summary.errorsByStatus)
    {
      tile["ErrorsByStatus"][std::to_string(entry.first)] = Json::UInt64(entry.second);
    }
    answer["Requests"][window.second] = tile;
  }
  return answer;
}


Json::Value PluginContext::GetSettings()
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  return GetSettingsLocked();
}


Json::Value PluginContext::GetSettingsLocked()
{
  Json::Value answer;
  answer["Settings"] = ToRedactedJson(configuration_);
  answer["Paused"] = paused_;
  answer["RuntimeKeys"] = Json::arrayValue;
  for (const std::string& key : GetRuntimeKeys())
  {
    answer["RuntimeKeys"].append(key);
  }
  answer["RuntimeKeys"].append("Paused");
  answer["Overridden"] = FlattenOverrides(overrides_);
  return answer;
}


Json::Value PluginContext::GetRuntimeValuesLocked()
{
  Json::Value values = GetRuntimeValues(configuration_);
  values["Paused"] = paused_;
  return values;
}


Json::Value PluginContext::GetRuntimeValuesNow()
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  return GetRuntimeValuesLocked();
}


Json::Value PluginContext::GetRuntimeValuesOf(const SnapshotRecord& snapshot)
{
  Json::Value settings;
  std::string error;
  ParseJson(settings, error, snapshot.settings.data(), snapshot.settings.size());

  // The snapshot contains ToRedactedJson() of a parsed configuration, so its values are normalized.
  Json::Value values = FlattenOverrides(settings);
  values["Paused"] = snapshot.paused;
  return values;
}


Json::Value PluginContext::ChangeSettings(const Json::Value& body)
{
  std::lock_guard<std::mutex> lock(settingsMutex_);

  const bool paused = body.isMember("Paused") ? ReadPausedValue(body["Paused"]) : paused_;

  const Json::Value overrides = UpdateOverrides(fileSection_, overrides_, body);
  Json::Value next = GetRuntimeValues(ParseConfiguration(MergeSettings(fileSection_, overrides)));
  next["Paused"] = paused;
  const Json::Value diff = DiffValues(GetRuntimeValuesLocked(), next);

  Json::Value answer;
  answer["Changed"] = Json::arrayValue;
  answer["Snapshot"] = Json::nullValue;
  if (!diff.empty())
  {
    answer["Snapshot"] = ToJson(TakeSnapshotLocked("before a change of settings", "SettingsChange"));
    StoreAndApply(overrides, paused);
    std::string names;
    for (const Json::Value& entry : diff)
    {
      answer["Changed"].append(entry["Key"]);
      names += (names.empty() ? "" : ", ") + entry["Key"].asString();
    }
    logger_.Warning("an administrator changed " + names + " (snapshot " +
                    answer["Snapshot"]["ID"].asString() + " holds the previous settings): sending to " +
                    configuration_.GetStowUrl() + (paused_ ? " (paused)" : ""));
  }

  const Json::Value settings = GetSettingsLocked();
  for (const std::string& name : settings.getMemberNames())
  {
    answer[name] = settings[name];
  }
  return answer;
}


void PluginContext::SetPaused(bool paused)
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  outbox_->SetProperty(PAUSED_PROPERTY, paused ? "true" : "false");
  paused_ = paused;
  if (paused)
  {
    dispatcher_->Pause();
  }
  else
  {
    dispatcher_->Resume();
  }
}


std::string PluginContext::FindRestoreError(const SnapshotRecord& snapshot)
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  try
  {
    // The same parse as StoreAndApply(), which RestoreSettings() runs, but nothing is stored.
    const Json::Value overrides = MakeOverrides(fileSection_, GetRuntimeValuesOf(snapshot));
    ParseConfiguration(MergeSettings(fileSection_, overrides));
    return "";
  }
  catch (const Exception& e)
  {
    return e.what();
  }
}


void PluginContext::RestoreSettings(const SnapshotRecord& snapshot)
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  const Json::Value values = GetRuntimeValuesOf(snapshot);
  StoreAndApply(MakeOverrides(fileSection_, values), values["Paused"].asBool());
  logger_.Warning("restored the settings of snapshot " + std::to_string(snapshot.id) +
                  ": sending to " + configuration_.GetStowUrl() + (paused_ ? " (paused)" : ""));
}


void PluginContext::StoreAndApply(const Json::Value& overrides, bool paused)
{
  const Configuration next = ParseConfiguration(MergeSettings(fileSection_, overrides));

  // Built before anything is stored, because a credential that cannot be built fails the change.
  std::shared_ptr<CredentialManager> credentials = credentials_;
  if (PinsOtherSecretVersion(configuration_, next))
  {
    credentials = std::make_shared<CredentialManager>(next.credentials, next.tls, &logger_);
  }

  outbox_->SetProperty(RUNTIME_SETTINGS_PROPERTY, WriteJson(overrides));
  outbox_->SetProperty(PAUSED_PROPERTY, paused ? "true" : "false");
  Apply(next, credentials, overrides, paused);
}


void PluginContext::Apply(const Configuration& next,
                          const std::shared_ptr<CredentialManager>& credentials,
                          const Json::Value& overrides, bool paused)
{
  overrides_ = overrides;

  const bool destinationChanged = GetRuntimeValues(next) != GetRuntimeValues(configuration_) ||
                                  credentials != credentials_;
  const std::string tlsWarning = GetUnverifiedTlsWarning(next);
  if (destinationChanged && !tlsWarning.empty())
  {
    logger_.Warning(tlsWarning);
  }
  configuration_ = next;
  credentials_ = credentials;
  if (destinationChanged)
  {
    dispatcher_->Reconfigure(GetDispatcherSettings(next, *credentials),
                             MakeSenderFactory(next, credentials));
    deletions_->Reconfigure(MakeSenderFactory(next, credentials));
  }

  if (paused != paused_)
  {
    paused_ = paused;
    if (paused)
    {
      dispatcher_->Pause();
    }
    else
    {
      dispatcher_->Resume();
    }
  }
}


void PluginContext::LoadSharedSettings()
{
  const std::string text = outbox_->GetProperty(RUNTIME_SETTINGS_PROPERTY, "{}");
  const bool paused = outbox_->GetProperty(PAUSED_PROPERTY, "false") == "true";

  Json::Value overrides;
  std::string error;
  if (!ParseJson(overrides, error, text.data(), text.size()) || !overrides.isObject())
  {
    overrides = Json::Value(Json::objectValue);
  }

  std::lock_guard<std::mutex> lock(settingsMutex_);
  if (overrides == overrides_ && paused == paused_)
  {
    return;
  }

  try
  {
    const Configuration next = ParseConfiguration(MergeSettings(fileSection_, overrides));
    std::shared_ptr<CredentialManager> credentials = credentials_;
    if (PinsOtherSecretVersion(configuration_, next))
    {
      credentials = std::make_shared<CredentialManager>(next.credentials, next.tls, &logger_);
    }
    Apply(next, credentials, overrides, paused);
    logger_.Warning("applied the runtime settings that another node changed: sending to " +
                    configuration_.GetStowUrl() + (paused_ ? " (paused)" : ""));
    lastSharedSettingsError_.clear();
  }
  catch (const Exception& e)
  {
    // Checked again at every tick: logged once per distinct error.
    if (e.what() != lastSharedSettingsError_)
    {
      logger_.Warning(std::string("cannot apply the runtime settings that another node "
                                  "changed, keeping the current ones: ") +
                      e.what());
      lastSharedSettingsError_ = e.what();
    }
  }
}


SnapshotRecord PluginContext::TakeSnapshot(const std::string& label, const std::string& reason)
{
  std::lock_guard<std::mutex> lock(settingsMutex_);
  return TakeSnapshotLocked(label, reason);
}


SnapshotRecord PluginContext::TakeSnapshotLocked(const std::string& label,
                                                 const std::string& reason)
{
  SnapshotRecord snapshot;
  snapshot.label = label;
  snapshot.reason = reason;
  snapshot.createdAt = NowMs();
  snapshot.settings = WriteJson(ToRedactedJson(configuration_));
  snapshot.paused = paused_;
  outbox_->InsertSnapshot(snapshot);
  logger_.Info("took snapshot " + std::to_string(snapshot.id) + " (" + reason + "): " +
               std::to_string(snapshot.lastCreated) + " instances created at the service so far");
  return snapshot;
}


bool PluginContext::ClaimRollbackJob(int64_t rollbackId)
{
  std::lock_guard<std::mutex> lock(rollbackMutex_);
  return rollbackJobs_.insert(rollbackId).second;
}


void PluginContext::ReleaseRollbackJob(int64_t rollbackId)
{
  std::lock_guard<std::mutex> lock(rollbackMutex_);
  rollbackJobs_.erase(rollbackId);
}


void PluginContext::ResumeRollbacks()
{
  for (int64_t rollbackId : outbox_->ListRunningRollbacks())
  {
    {
      std::lock_guard<std::mutex> lock(rollbackMutex_);
      if (rollbackJobs_.count(rollbackId) > 0)
      {
        continue;  // Orthanc re-created its job from the job registry
      }
    }

    const std::string jobId = RollbackJob::Submit(*this, rollbackId);
    logger_.Warning("resuming rollback " + std::to_string(rollbackId) +
                    " that was running when Orthanc stopped, as job " + jobId);
  }
}


void PluginContext::NoteStoredInstance(const std::string& orthancId, const char* file,
                                       size_t size)
{
  follower_->NoteStoredInstance(orthancId);
  storedFiles_.Keep(orthancId, file, size);
  // Another node's follower reads this node's stores from Orthanc's index instead.
  if (election_->IsFollowing())
  {
    storedInstances_.Note(orthancId, file, size);
  }
}


void PluginContext::HandleDeletedInstance(const std::string& orthancId)
{
  storedInstances_.Forget(orthancId);
  storedFiles_.Forget(orthancId);
  if (!GetConfiguration().mirrorDeletes)
  {
    return;
  }

  if (outbox_->RequestDeletion(orthancId, NowMs()))
  {
    deletions_->Wake();
  }
}
}  // namespace AzureDicom
