#pragma once

#include "Azure/CredentialManager.h"
#include "Orthanc/OrthancApi.h"
#include "Sync/ChangeFollower.h"
#include "Sync/Configuration.h"
#include "Sync/DeletionWorker.h"
#include "Sync/Dispatcher.h"
#include "Sync/FollowerElection.h"
#include "Sync/Outbox.h"
#include "Sync/StatusHistory.h"
#include "Sync/StoredFileCache.h"
#include "Sync/StoredInstanceCache.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

namespace AzureDicom
{
// The plugin's one context object: the configuration and every running part, from the time
// Orthanc loads the plugin until it unloads it.
class PluginContext
{
public:
  // Opens the outbox and applies the runtime settings stored there over the file's section; the
  // threads start with Start(), once Orthanc has started. nodeName names this Orthanc among the
  // nodes that share a PostgreSQL outbox.
  PluginContext(OrthancPluginContext* orthanc, const Json::Value& fileSection,
                const std::string& databasePath, const std::string& nodeName);
  ~PluginContext();

  void Start();
  void Stop();

  OrthancPluginContext* GetOrthanc() const
  {
    return orthanc_;
  }

  // The effective configuration: the file's section with the runtime settings over it.
  Configuration GetConfiguration();

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

  // Names Orthanc's StorageDirectory, as an absolute path, where the workers and the back-fill
  // jobs read files. Call it before Start().
  void SetStorageDirectory(const std::string& directory)
  {
    storageDirectory_ = directory;
    dispatcher_->SetStorageDirectory(directory);
  }

  const std::string& GetStorageDirectory() const
  {
    return storageDirectory_;
  }

  // Replaced when a settings change pins another Key Vault secret version.
  std::shared_ptr<CredentialManager> GetCredentials();

  // A sender to the current destination with the current credentials, for rollback jobs.
  std::unique_ptr<IStowSender> CreateSender();

  Json::Value GetStatus();

  // GET /azure-dicom/status/history: the samples of the last hour and the request tiles.
  Json::Value GetStatusHistory();

  // GET /azure-dicom/settings.
  Json::Value GetSettings();

  // PUT /azure-dicom/settings: checks the body, takes a snapshot, stores and applies the change.
  // Throws Exception(BadRequest) naming the key; nothing changes then.
  Json::Value ChangeSettings(const Json::Value& body);

  // Pauses or resumes sending, and stores it so that a restart keeps it.
  void SetPaused(bool paused);

  // Takes a snapshot of the effective settings, the outbox position and the counts.
  SnapshotRecord TakeSnapshot(const std::string& label, const std::string& reason);

  // The runtime values of the settings now, and those of a snapshot, as {dotted key: value}
  // with "Paused".
  Json::Value GetRuntimeValuesNow();
  static Json::Value GetRuntimeValuesOf(const SnapshotRecord& snapshot);

  // Returns why the runtime settings of a snapshot cannot be restored over the current
  // configuration file (the key and the reason), or "" when they can.
  std::string FindRestoreError(const SnapshotRecord& snapshot);

  // Restores the runtime settings and the pause of a snapshot, without taking another.
  void RestoreSettings(const SnapshotRecord& snapshot);

  // Held while a rollback starts, from its checks until its job is submitted, so that a second
  // request of this process finds the first one's rollback running.
  std::mutex& GetRollbackStartMutex()
  {
    return rollbackStartMutex_;
  }

  // Records that a job in this process runs the rollback; returns false when one already does.
  bool ClaimRollbackJob(int64_t rollbackId);
  void ReleaseRollbackJob(int64_t rollbackId);

  // Called from Orthanc's store callback with the stored DICOM file: keeps the instance's
  // identifiers for the change follower, which then does not look them up in Orthanc.
  void NoteStoredInstance(const std::string& orthancId, const char* file, size_t size);

  // Marks an instance deleted in Orthanc for deletion at the service, when MirrorDeletes is on.
  void HandleDeletedInstance(const std::string& orthancId);

  // Publishes the counts and totals to Orthanc's metrics (/tools/metrics-prometheus).
  void UpdateMetrics();

private:
  void LoadRuntimeSettings();
  Json::Value GetSettingsLocked();
  Json::Value GetRuntimeValuesLocked();
  SnapshotRecord TakeSnapshotLocked(const std::string& label, const std::string& reason);
  void RunMonitor();
  void ResumeRollbacks();

  // Adds the parts of the status that the outbox database stores. Throws DatabaseError when it
  // cannot be read.
  void AddOutboxStatus(Json::Value& status, int64_t now);

  // Stores and applies new overrides and pause. The caller holds settingsMutex_.
  void StoreAndApply(const Json::Value& overrides, bool paused);

  // Applies a configuration parsed from the overrides. The caller holds settingsMutex_.
  void Apply(const Configuration& next, const std::shared_ptr<CredentialManager>& credentials,
             const Json::Value& overrides, bool paused);

  // Applies the runtime settings and the pause that another node of a shared outbox stored.
  void LoadSharedSettings();

  Dispatcher::SenderFactory MakeSenderFactory(const Configuration& configuration,
                                              const std::shared_ptr<CredentialManager>& credentials);

  static constexpr unsigned int METRICS_INTERVAL_MS = 5000;

  OrthancPluginContext* orthanc_;
  Json::Value fileSection_;  // the "AzureDicom" section of Orthanc's configuration file
  std::string databasePath_;
  std::string storageDirectory_;  // set before Start(), read only after
  OrthancLogger logger_;
  OrthancGateway gateway_;
  // Declared before the threads that use them, so that they are destroyed after those.
  StoredInstanceCache storedInstances_;  // thread-safe on its own
  StoredFileCache storedFiles_;          // thread-safe on its own
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<ChangeFollower> follower_;
  std::unique_ptr<FollowerElection> election_;
  std::unique_ptr<DeletionWorker> deletions_;
  StatusHistory history_;  // thread-safe on its own

  std::mutex settingsMutex_;  // protects the four members below; held during a whole change
  Configuration configuration_;
  Json::Value overrides_;  // the runtime settings that differ from the file's
  bool paused_ = false;
  std::shared_ptr<CredentialManager> credentials_;

  std::mutex rollbackMutex_;
  std::set<int64_t> rollbackJobs_;  // rollbacks that a job of this process runs
  std::mutex rollbackStartMutex_;

  std::mutex mutex_;
  std::condition_variable stopMonitor_;
  bool stopping_ = false;
  std::thread monitor_;
  std::string lastSecretError_;  // used by the monitor thread only
  std::string lastNodeError_;    // used by the monitor thread only
  std::string lastSharedSettingsError_;  // under settingsMutex_

  std::mutex statusMutex_;
  Json::Value lastOutboxStatus_;  // shown again while the database cannot be read
};
}  // namespace AzureDicom
