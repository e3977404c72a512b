#include "Orthanc/PluginContext.h"

#include "Azure/StowClient.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Sync/OutboxJson.h"

namespace AzureDicom
{
PluginContext::PluginContext(OrthancPluginContext* orthanc, const Configuration& configuration,
                             const std::string& databasePath) :
    orthanc_(orthanc),
    configuration_(configuration),
    databasePath_(databasePath),
    logger_(orthanc),
    gateway_(orthanc)
{
  try
  {
    outbox_ = std::make_unique<Outbox>(databasePath);
  }
  catch (const Exception& e)
  {
    throw Exception(ErrorCode::BadConfiguration,
                    std::string("AzureDicom.Database: ") + e.what() +
                        "; expected the path of a writable SQLite file, or \"\" for one in "
                        "Orthanc's StorageDirectory");
  }

  credentials_ =
      std::make_unique<CredentialManager>(configuration.credentials, configuration.tls, &logger_);

  DispatcherSettings settings;
  settings.workers = configuration.workers;
  settings.maxInstancesPerRequest = configuration.maxInstancesPerRequest;
  settings.maxRequestBytes = configuration.GetMaxRequestBytes();
  settings.leaseSeconds = configuration.leaseSeconds;
  settings.retry = configuration.retry;
  settings.destination = configuration.GetStowUrl();
  settings.principal = credentials_->GetPrincipal();

  const std::string stowUrl = configuration.GetStowUrl();
  const TlsSettings tls = configuration.tls;
  const unsigned int timeout = configuration.requestTimeoutSeconds;
  std::shared_ptr<TokenCache> tokens = credentials_->GetTokens();
  dispatcher_ = std::make_unique<Dispatcher>(
      *outbox_, gateway_, logger_, settings, [stowUrl, tls, timeout, tokens]() {
        return std::make_unique<StowClient>(stowUrl, tls, timeout, tokens);
      });

  Dispatcher* dispatcher = dispatcher_.get();
  follower_ = std::make_unique<ChangeFollower>(gateway_, *outbox_, logger_,
                                               [dispatcher]() { dispatcher->Wake(); });
}


PluginContext::~PluginContext()
{
  Stop();
}


void PluginContext::Start()
{
  // This process is the only one using the SQLite outbox, so a Sending item at start-up was
  // claimed by a worker that died with the previous process.
  const uint64_t released = outbox_->ReleaseAllLeases(NowMs());
  if (released > 0)
  {
    logger_.Warning(std::to_string(released) +
                    " instances were being sent when Orthanc stopped: they are queued again");
  }

  follower_->Start();
  dispatcher_->Start();

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
  stopMonitor_.notify_all();
  if (monitor_.joinable())
  {
    monitor_.join();
  }

  follower_->Stop();
  dispatcher_->Stop();
}


void PluginContext::RunMonitor()
{
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

    // Reads the Key Vault secret again once RefreshSeconds have passed, even while the token
    // made with it is still valid, so that the status shows a rotation or a revoked access.
    std::shared_ptr<SecretProvider> secrets = credentials_->GetSecretProvider();
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


Json::Value PluginContext::GetStatus()
{
  const int64_t now = NowMs();
  const DispatcherStatus dispatcher = dispatcher_->GetStatus();

  // New instances that cannot be queued (outbox disk full or locked) stop the mirror as surely
  // as a destination error does, even while the dispatcher has nothing to send.
  const std::string followerError = follower_->GetLastError();
  const bool followerFailing = !followerError.empty() && dispatcher.state == "Running";

  Json::Value status;
  status["Enabled"] = true;
  status["State"] = followerFailing ? "Waiting" : dispatcher.state;
  status["Paused"] = followerFailing || dispatcher.state != "Running";
  status["PauseReason"] =
      followerFailing ? "new instances cannot be queued: " + followerError : dispatcher.pauseReason;
  status["WaitUntil"] = ToJsonTime(dispatcher.waitUntil);
  status["Counts"] = ToJson(outbox_->CountByState());

  const int64_t oldest = outbox_->GetOldestPendingTime();
  status["OldestPendingAgeSeconds"] = oldest == 0 ? 0.0 : (now - oldest) / 1000.0;

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
  else if (dispatcher.lastErrorTime == 0)
  {
    status["LastError"] = Json::nullValue;
  }
  else
  {
    status["LastError"]["Time"] = FormatIsoTime(dispatcher.lastErrorTime);
    status["LastError"]["Message"] = dispatcher.lastError;
    status["LastError"]["StatusCode"] = dispatcher.lastErrorStatus;
  }

  status["Destination"]["ServiceUrl"] = configuration_.serviceUrl;
  status["Destination"]["ApiVersion"] = configuration_.apiVersion;
  status["Destination"]["Partition"] = configuration_.partition;
  status["Destination"]["StowUrl"] = configuration_.GetStowUrl();

  status["Credentials"] = credentials_->GetStatus();

  status["Follower"]["Sequence"] = Json::Int64(outbox_->GetFollowerSequence());
  status["Follower"]["LastError"] = follower_->GetLastError();
  status["Workers"] = configuration_.workers;
  return status;
}
}  // namespace AzureDicom
