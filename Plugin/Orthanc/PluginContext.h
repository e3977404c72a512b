#pragma once

#include "Azure/CredentialManager.h"
#include "Orthanc/OrthancApi.h"
#include "Sync/ChangeFollower.h"
#include "Sync/Configuration.h"
#include "Sync/Dispatcher.h"
#include "Sync/Outbox.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace AzureDicom
{
// The plugin's one context object: the configuration and every running part, from the time
// Orthanc loads the plugin until it unloads it.
class PluginContext
{
public:
  // Opens the outbox; the threads start with Start(), once Orthanc has started.
  PluginContext(OrthancPluginContext* orthanc, const Configuration& configuration,
                const std::string& databasePath);
  ~PluginContext();

  void Start();
  void Stop();

  OrthancPluginContext* GetOrthanc() const
  {
    return orthanc_;
  }

  const Configuration& GetConfiguration() const
  {
    return configuration_;
  }

  ILogger& GetLogger()
  {
    return logger_;
  }

  OrthancGateway& GetGateway()
  {
    return gateway_;
  }

  Outbox& GetOutbox()
  {
    return *outbox_;
  }

  Dispatcher& GetDispatcher()
  {
    return *dispatcher_;
  }

  ChangeFollower& GetFollower()
  {
    return *follower_;
  }

  CredentialManager& GetCredentials()
  {
    return *credentials_;
  }

  Json::Value GetStatus();

  // Publishes the counts and totals to Orthanc's metrics (/tools/metrics-prometheus).
  void UpdateMetrics();

private:
  void RunMonitor();

  static const unsigned int METRICS_INTERVAL_MS = 5000;

  OrthancPluginContext* orthanc_;
  Configuration configuration_;
  std::string databasePath_;
  OrthancLogger logger_;
  OrthancGateway gateway_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<CredentialManager> credentials_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<ChangeFollower> follower_;

  std::mutex mutex_;
  std::condition_variable stopMonitor_;
  bool stopping_ = false;
  std::thread monitor_;
  std::string lastSecretError_;  // used by the monitor thread only
};
}  // namespace AzureDicom
