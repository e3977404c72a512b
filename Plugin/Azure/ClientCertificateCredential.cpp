#include "Azure/ClientCertificateCredential.h"

#include "Azure/TokenRequest.h"
#include "Common/Clock.h"
#include "Common/Exception.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json/value.h>
#include <json/writer.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <utility>
#include <vector>

namespace AzureDicom
{
namespace
{
const int64_t ASSERTION_LIFETIME_SECONDS = 600;
const int64_t EXPIRY_WARNING_SECONDS = 30 * 24 * 3600;
const int64_t MS_PER_SECOND = 1000;
const size_t MAX_CERTIFICATE_FILE_BYTES = 1024 * 1024;
const size_t UUID_BYTES = 16;
const char PEM_MARKER[] = "-----BEGIN";
const char CLIENT_ASSERTION_TYPE[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const char CREDENTIAL_TYPE[] = "ClientCertificate";
const char PASSWORD_KEY[] = "AzureDicom.Credentials.CertificatePassword";


struct OpenSslDeleter
{
  void operator()(BIO* bio) const
  {
    BIO_free(bio);
  }

  void operator()(X509* certificate) const
  {
    X509_free(certificate);
  }

  void operator()(EVP_PKEY* key) const
  {
    EVP_PKEY_free(key);
  }

  void operator()(PKCS12* pkcs12) const
  {
    PKCS12_free(pkcs12);
  }

  void operator()(EVP_MD_CTX* context) const
  {
    EVP_MD_CTX_free(context);
  }

  void operator()(STACK_OF(X509) * certificates) const
  {
    sk_X509_pop_free(certificates, X509_free);
  }
};

using BioPtr = std::unique_ptr<BIO, OpenSslDeleter>;
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter>;
using KeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, OpenSslDeleter>;
using DigestContextPtr = std::unique_ptr<EVP_MD_CTX, OpenSslDeleter>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), OpenSslDeleter>;


// OpenSSL's error queue is per thread, and libcurl reads it after a failed TLS handshake. Errors
// left by the decoding of a certificate would then appear in libcurl's message.
class ErrorQueueCleaner
{
public:
  ErrorQueueCleaner()
  {
    ERR_clear_error();
  }

  ~ErrorQueueCleaner()
  {
    ERR_clear_error();
  }

  ErrorQueueCleaner(const ErrorQueueCleaner&) = delete;
  ErrorQueueCleaner& operator=(const ErrorQueueCleaner&) = delete;
};


// The beginning of every message about one certificate, and the code of its exceptions.
struct ErrorContext
{
  std::string where;
  ErrorCode code;

  [[noreturn]] void Throw(const std::string& problem) const
  {
    throw Exception(code, where + ": " + problem);
  }
};


struct LoadedCertificate
{
  X509Ptr certificate;
  KeyPtr key;
};


// The certificates and the private key found in a PEM file.
struct PemContents
{
  std::vector<X509Ptr> certificates;
  KeyPtr key;
};


// One block returned by PEM_read_bio. The data of a key block is the key itself (or its
// encrypted form), so it is cleansed before it is freed.
struct PemBlock
{
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long length = 0;

  PemBlock() = default;
  PemBlock(const PemBlock&) = delete;
  PemBlock& operator=(const PemBlock&) = delete;

  ~PemBlock()
  {
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_clear_free(data, static_cast<size_t>(length));
  }
};


// Returns the distinct reasons of the errors in OpenSSL's queue, such as "OpenSSL: bad
// decrypt", and empties the queue. unsupported is set when one of them is ERR_R_UNSUPPORTED, the
// reason that OpenSSL 3 gives for an algorithm of a provider that is not loaded.
std::string TakeOpenSslErrors(bool* unsupported = nullptr)
{
  std::string reasons;
  for (unsigned long error = ERR_get_error(); error != 0; error = ERR_get_error())
  {
    if (unsupported != nullptr && ERR_GET_REASON(error) == ERR_R_UNSUPPORTED)
    {
      *unsupported = true;
    }

    const char* reason = ERR_reason_error_string(error);
    const std::string text =
        reason != nullptr ? std::string(reason) : "error " + std::to_string(error);
    if (reasons.find(text) == std::string::npos)
    {
      reasons += (reasons.empty() ? "" : "; ") + text;
    }
  }

  return "OpenSSL: " + (reasons.empty() ? std::string("no error reported") : reasons);
}


BioPtr MakeMemoryBio(const std::string& data)
{
  BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio)
  {
    throw Exception(ErrorCode::InternalError, "BIO_new_mem_buf failed: " + TakeOpenSslErrors());
  }

  return bio;
}


// The password callback of PEM_read_bio_PrivateKey. It is passed even when the password is
// empty, because with neither a callback nor a password OpenSSL prompts on the terminal.
int CopyPassword(char* buffer, int size, int /* writing */, void* userData)
{
  const std::string& password = *static_cast<const std::string*>(userData);
  if (password.empty() || password.size() > static_cast<size_t>(size))
  {
    return -1;
  }

  std::memcpy(buffer, password.data(), password.size());
  return static_cast<int>(password.size());
}


std::string ToHex(const std::vector<unsigned char>& bytes)
{
  static const char DIGITS[] = "0123456789ABCDEF";
  std::string hex;
  for (const unsigned char byte : bytes)
  {
    hex += DIGITS[byte >> 4];
    hex += DIGITS[byte & 0x0F];
  }

  return hex;
}


std::string EncodeBase64Url(const unsigned char* data, size_t size)
{
  std::string encoded(4 * ((size + 2) / 3) + 1, '\0');
  const int length =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&encoded[0]), data, static_cast<int>(size));
  encoded.resize(static_cast<size_t>(length));

  while (!encoded.empty() && encoded.back() == '=')
  {
    encoded.pop_back();
  }

  for (char& c : encoded)
  {
    c = c == '+' ? '-' : (c == '/' ? '_' : c);
  }

  return encoded;
}


std::string EncodeBase64Url(const std::string& text)
{
  return EncodeBase64Url(reinterpret_cast<const unsigned char*>(text.data()), text.size());
}


std::vector<unsigned char> ComputeDigest(const X509* certificate, const EVP_MD* algorithm)
{
  std::vector<unsigned char> digest(EVP_MAX_MD_SIZE);
  unsigned int length = 0;
  if (X509_digest(certificate, algorithm, digest.data(), &length) != 1)
  {
    throw Exception(ErrorCode::InternalError, "X509_digest failed: " + TakeOpenSslErrors());
  }

  digest.resize(length);
  return digest;
}


std::string GetThumbprintOf(const X509* certificate)
{
  return ToHex(ComputeDigest(certificate, EVP_sha1()));
}


std::string FormatAsn1Time(const ASN1_TIME* time)
{
  std::tm parts{};
  if (ASN1_TIME_to_tm(time, &parts) != 1)
  {
    ERR_clear_error();
    return "(an unreadable date)";
  }

  char text[sizeof("2026-12-03T10:15:30Z")];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}


// Returns "" when the certificate is valid at nowSeconds, otherwise what is wrong with its
// dates ("expired on 2024-05-01T00:00:00Z").
std::string DescribeValidityProblem(const X509* certificate, int64_t nowSeconds)
{
  time_t now = static_cast<time_t>(nowSeconds);
  const ASN1_TIME* notAfter = X509_get0_notAfter(certificate);
  const ASN1_TIME* notBefore = X509_get0_notBefore(certificate);

  if (X509_cmp_time(notAfter, &now) < 0)
  {
    return "expired on " + FormatAsn1Time(notAfter);
  }

  if (X509_cmp_time(notBefore, &now) > 0)
  {
    return "is not valid before " + FormatAsn1Time(notBefore);
  }

  return std::string();
}


bool ExpiresBefore(const X509* certificate, int64_t seconds)
{
  time_t limit = static_cast<time_t>(seconds);
  return X509_cmp_time(X509_get0_notAfter(certificate), &limit) < 0;
}


struct FileCloser
{
  int descriptor;

  ~FileCloser()
  {
    close(descriptor);
  }
};


std::string ReadFileBytes(const std::string& path, const ErrorContext& context)
{
  const int file = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file < 0)
  {
    context.Throw(std::string("cannot be opened: ") + std::strerror(errno) +
                  "; expected a readable PEM or PKCS#12 file");
  }

  const FileCloser closer{file};

  struct stat status;
  if (fstat(file, &status) != 0 || !S_ISREG(status.st_mode))
  {
    context.Throw("is not a regular file; expected a PEM or PKCS#12 file");
  }

  if (static_cast<uint64_t>(status.st_size) > MAX_CERTIFICATE_FILE_BYTES)
  {
    context.Throw("is " + std::to_string(status.st_size) + " bytes; expected at most " +
                  std::to_string(MAX_CERTIFICATE_FILE_BYTES) +
                  " bytes for a certificate, its chain and its key");
  }

  std::string data(static_cast<size_t>(status.st_size), '\0');
  size_t received = 0;
  while (received < data.size())
  {
    const ssize_t count = read(file, &data[received], data.size() - received);
    if (count < 0 && errno == EINTR)
    {
      continue;
    }

    if (count <= 0)
    {
      context.Throw(std::string("cannot be read: ") +
                    (count < 0 ? std::strerror(errno) : "the file became shorter"));
    }

    received += static_cast<size_t>(count);
  }

  return data;
}


bool IsCertificateBlock(const std::string& name)
{
  return name == "CERTIFICATE" || name == "X509 CERTIFICATE" || name == "TRUSTED CERTIFICATE";
}


bool IsPrivateKeyBlock(const std::string& name)
{
  const std::string suffix = "PRIVATE KEY";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}


void AddPemCertificate(const PemBlock& block, PemContents& contents, const ErrorContext& context)
{
  const unsigned char* cursor = block.data;
  X509Ptr certificate(std::string(block.name) == "TRUSTED CERTIFICATE"
                          ? d2i_X509_AUX(nullptr, &cursor, block.length)
                          : d2i_X509(nullptr, &cursor, block.length));
  if (!certificate)
  {
    context.Throw("a " + std::string(block.name) + " block cannot be decoded (" +
                  TakeOpenSslErrors() + ")");
  }

  contents.certificates.push_back(std::move(certificate));
}


// Decodes the key block on its own, so that the key may come before or after the certificates.
// An encrypted key is recognised by its block name ("ENCRYPTED PRIVATE KEY") or its header
// ("Proc-Type: 4,ENCRYPTED").
void AddPemKey(const PemBlock& block, const std::string& password, PemContents& contents,
               const ErrorContext& context)
{
  if (contents.key)
  {
    context.Throw("contains more than one private key; expected one key, of the certificate");
  }

  BioPtr single(BIO_new(BIO_s_mem()));
  if (!single ||
      PEM_write_bio(single.get(), block.name, block.header, block.data, block.length) <= 0)
  {
    throw Exception(ErrorCode::InternalError, "PEM_write_bio failed: " + TakeOpenSslErrors());
  }

  contents.key.reset(PEM_read_bio_PrivateKey(single.get(), nullptr, CopyPassword,
                                             const_cast<std::string*>(&password)));
  if (contents.key)
  {
    return;
  }

  const bool encrypted =
      std::string(block.name) == "ENCRYPTED PRIVATE KEY" ||
      (block.header != nullptr && std::strstr(block.header, "ENCRYPTED") != nullptr);
  const std::string reasons = TakeOpenSslErrors();
  if (encrypted && password.empty())
  {
    context.Throw(std::string("the private key is encrypted; expected its password in ") +
                  PASSWORD_KEY);
  }

  if (encrypted)
  {
    const std::string problem =
        "cannot decrypt the private key: the password is wrong, or the "
        "key uses a cipher that OpenSSL does not support";
    context.Throw(problem + " (" + reasons + ")");
  }

  context.Throw("the private key cannot be decoded (" + reasons + ")");
}


bool IsEndOfPem()
{
  const unsigned long error = ERR_peek_last_error();
  return ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
}


PemContents ReadPemBlocks(const CertificateSource& source, const ErrorContext& context)
{
  PemContents contents;
  BioPtr bio = MakeMemoryBio(source.data);
  size_t blockCount = 0;

  for (;;)
  {
    PemBlock block;
    if (PEM_read_bio(bio.get(), &block.name, &block.header, &block.data, &block.length) != 1)
    {
      if (blockCount > 0 && IsEndOfPem())
      {
        ERR_clear_error();
        return contents;
      }

      context.Throw("PEM block " + std::to_string(blockCount + 1) + " cannot be read (" +
                    TakeOpenSslErrors() + ")");
    }

    blockCount++;
    if (IsCertificateBlock(block.name))
    {
      AddPemCertificate(block, contents, context);
    }
    else if (IsPrivateKeyBlock(block.name))
    {
      AddPemKey(block, source.password, contents, context);
    }
  }
}


// A PEM file can contain a chain. The certificate of the assertion is the one whose public key
// matches the private key.
LoadedCertificate LoadPem(const CertificateSource& source, const ErrorContext& context)
{
  PemContents contents = ReadPemBlocks(source, context);
  if (!contents.key)
  {
    context.Throw("contains no PRIVATE KEY block; expected the private key with the certificate");
  }

  if (contents.certificates.empty())
  {
    context.Throw("contains no CERTIFICATE block; expected the certificate with its private key");
  }

  for (X509Ptr& certificate : contents.certificates)
  {
    if (X509_check_private_key(certificate.get(), contents.key.get()) == 1)
    {
      return LoadedCertificate{std::move(certificate), std::move(contents.key)};
    }
  }

  ERR_clear_error();
  const size_t otherCount = contents.certificates.size() - 1;
  const std::string others =
      otherCount > 0 ? " nor any of the other " + std::to_string(otherCount) : std::string();
  context.Throw("the private key does not match the certificate (thumbprint " +
                GetThumbprintOf(contents.certificates.front().get()) + ")" + others +
                "; expected the key of the certificate");
}


bool VerifyEmptyPkcs12Password(PKCS12* pkcs12)
{
  return PKCS12_verify_mac(pkcs12, nullptr, 0) == 1 || PKCS12_verify_mac(pkcs12, "", 0) == 1;
}


// Checks the password against the file's MAC first, to tell a wrong password, a missing one and
// an unneeded one apart. A file without a MAC is not checked here, so a wrong password makes
// its decryption fail instead.
void VerifyPkcs12Password(PKCS12* pkcs12, const std::string& password, const ErrorContext& context)
{
  if (PKCS12_mac_present(pkcs12) != 1)
  {
    return;
  }

  ERR_clear_error();
  if (password.empty() ? VerifyEmptyPkcs12Password(pkcs12)
                       : PKCS12_verify_mac(pkcs12, password.c_str(), -1) == 1)
  {
    return;
  }

  if (ERR_peek_error() != 0)
  {
    context.Throw("the integrity of the PKCS#12 file cannot be checked (" + TakeOpenSslErrors() +
                  ")");
  }

  if (password.empty())
  {
    context.Throw(std::string("the PKCS#12 file is protected by a password; expected it in ") +
                  PASSWORD_KEY);
  }

  if (VerifyEmptyPkcs12Password(pkcs12))
  {
    context.Throw(std::string("the PKCS#12 file has no password, but a password was given; "
                              "expected an empty ") +
                  PASSWORD_KEY);
  }

  context.Throw(
      "the PKCS#12 password is wrong (the MAC of the file does not verify); "
      "expected the password that the file was exported with");
}


bool IsBase64Text(const std::string& data)
{
  return data.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
             "\r\n \t") == std::string::npos;
}


Pkcs12Ptr DecodePkcs12(const std::string& data, const ErrorContext& context)
{
  BioPtr bio = MakeMemoryBio(data);
  Pkcs12Ptr pkcs12(d2i_PKCS12_bio(bio.get(), nullptr));
  if (pkcs12)
  {
    return pkcs12;
  }

  ERR_clear_error();
  const std::string problem =
      "is neither PEM (it has no -----BEGIN line) nor PKCS#12 (DER "
      "decoding failed); expected a certificate with its private key";
  const std::string hint =
      IsBase64Text(data) ? ". The content looks like base64 text: decode it first" : "";
  context.Throw(problem + hint);
}


[[noreturn]] void ThrowPkcs12ParseError(const ErrorContext& context)
{
  bool unsupported = false;
  const std::string reasons = TakeOpenSslErrors(&unsupported);
  if (unsupported)
  {
    const std::string problem =
        "the PKCS#12 file uses an algorithm that OpenSSL 3 disables by "
        "default, such as the RC2-40 of older exports";
    const std::string fix =
        "Convert it with: openssl pkcs12 -legacy -in OLD.pfx -nodes | "
        "openssl pkcs12 -export -out NEW.pfx";
    context.Throw(problem + " (" + reasons + "). " + fix);
  }

  const std::string problem =
      "the PKCS#12 file cannot be decrypted: the password is wrong, or "
      "it uses a cipher that OpenSSL does not support";
  context.Throw(problem + " (" + reasons + ")");
}


LoadedCertificate LoadPkcs12(const CertificateSource& source, const ErrorContext& context)
{
  Pkcs12Ptr pkcs12 = DecodePkcs12(source.data, context);
  VerifyPkcs12Password(pkcs12.get(), source.password, context);

  EVP_PKEY* key = nullptr;
  X509* certificate = nullptr;
  STACK_OF(X509)* others = nullptr;
  if (PKCS12_parse(pkcs12.get(), source.password.c_str(), &key, &certificate, &others) != 1)
  {
    ThrowPkcs12ParseError(context);
  }

  LoadedCertificate loaded{X509Ptr(certificate), KeyPtr(key)};
  const X509StackPtr chain(others);

  if (!loaded.key)
  {
    context.Throw(
        "the PKCS#12 file contains no private key; expected the certificate "
        "exported with its private key");
  }

  // PKCS12_parse returns as the certificate only one that matches the key, and puts the
  // others in the chain.
  if (!loaded.certificate && chain && sk_X509_num(chain.get()) > 0)
  {
    const std::string thumbprint = GetThumbprintOf(sk_X509_value(chain.get(), 0));
    context.Throw(
        "the private key of the PKCS#12 file does not match its certificate (thumbprint " +
        thumbprint + "); expected the key of the certificate");
  }

  if (!loaded.certificate)
  {
    context.Throw(
        "the PKCS#12 file contains no certificate; expected the certificate with "
        "its private key");
  }

  return loaded;
}


void RequireRsaKey(const EVP_PKEY* key, const ErrorContext& context)
{
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA)
  {
    return;
  }

  const char* typeName = EVP_PKEY_get0_type_name(key);
  context.Throw("the private key is of type " + std::string(typeName ? typeName : "unknown") +
                "; expected an RSA key, because the client assertion is signed with RS256");
}


LoadedCertificate LoadCertificate(const CertificateSource& source, const ErrorContext& context)
{
  const ErrorQueueCleaner cleaner;

  if (source.data.empty())
  {
    context.Throw("is empty; expected a PEM or PKCS#12 certificate with its private key");
  }

  LoadedCertificate loaded = source.pkcs12 ? LoadPkcs12(source, context) : LoadPem(source, context);
  RequireRsaKey(loaded.key.get(), context);
  return loaded;
}


ErrorContext MakeCredentialContext(const std::string& clientId)
{
  return ErrorContext{
      std::string(CREDENTIAL_TYPE) + " credential: the certificate of client ID " + clientId,
      ErrorCode::Unauthorized};
}


// Returns a random (version 4) UUID in its lower-case text form.
std::string CreateUuid()
{
  unsigned char bytes[UUID_BYTES];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1)
  {
    throw Exception(ErrorCode::InternalError, "RAND_bytes failed: " + TakeOpenSslErrors());
  }

  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0F) | 0x40);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3F) | 0x80);

  std::string hex = ToHex(std::vector<unsigned char>(bytes, bytes + sizeof(bytes)));
  for (char& c : hex)
  {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }

  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}


std::string WriteCompactJson(const Json::Value& value)
{
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "";
  builder["emitUTF8"] = true;
  return Json::writeString(builder, value);
}


std::string SignRs256(EVP_PKEY* key, const std::string& input)
{
  DigestContextPtr context(EVP_MD_CTX_new());
  EVP_PKEY_CTX* keyContext = nullptr;
  size_t length = 0;

  if (!context || EVP_DigestSignInit(context.get(), &keyContext, EVP_sha256(), nullptr, key) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PADDING) != 1 ||
      EVP_DigestSign(context.get(), nullptr, &length, nullptr, 0) != 1)
  {
    throw Exception(
        ErrorCode::InternalError,
        "cannot prepare the RS256 signature of the client assertion (" + TakeOpenSslErrors() + ")");
  }

  std::vector<unsigned char> signature(length);
  if (EVP_DigestSign(context.get(), signature.data(), &length,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
  {
    throw Exception(ErrorCode::InternalError,
                    "cannot sign the client assertion with RS256 (" + TakeOpenSslErrors() + ")");
  }

  return EncodeBase64Url(signature.data(), length);
}


std::string SignAssertion(const LoadedCertificate& certificate, const std::string& clientId,
                          const std::string& audience, int64_t nowSeconds)
{
  const ErrorQueueCleaner cleaner;

  const std::vector<unsigned char> sha1 = ComputeDigest(certificate.certificate.get(), EVP_sha1());
  const std::vector<unsigned char> sha256 =
      ComputeDigest(certificate.certificate.get(), EVP_sha256());

  Json::Value header(Json::objectValue);
  header["alg"] = "RS256";
  header["typ"] = "JWT";
  header["x5t"] = EncodeBase64Url(sha1.data(), sha1.size());
  header["x5t#S256"] = EncodeBase64Url(sha256.data(), sha256.size());

  Json::Value claims(Json::objectValue);
  claims["aud"] = audience;
  claims["iss"] = clientId;
  claims["sub"] = clientId;
  claims["jti"] = CreateUuid();
  claims["nbf"] = Json::Int64(nowSeconds);
  claims["iat"] = Json::Int64(nowSeconds);
  claims["exp"] = Json::Int64(nowSeconds + ASSERTION_LIFETIME_SECONDS);

  const std::string signingInput =
      EncodeBase64Url(WriteCompactJson(header)) + "." + EncodeBase64Url(WriteCompactJson(claims));
  return signingInput + "." + SignRs256(certificate.key.get(), signingInput);
}
}  // namespace


CertificateSource ReadCertificateFile(const std::string& path, const std::string& password)
{
  if (path.empty())
  {
    throw Exception(ErrorCode::BadConfiguration,
                    "AzureDicom.Credentials.CertificatePath is empty; expected the path of a PEM "
                    "or PKCS#12 file with the certificate and its private key");
  }

  const ErrorContext context{"AzureDicom.Credentials.CertificatePath \"" + path + "\"",
                             ErrorCode::BadConfiguration};

  CertificateSource source;
  source.data = ReadFileBytes(path, context);
  source.pkcs12 = source.data.find(PEM_MARKER) == std::string::npos;
  source.password = password;

  LoadCertificate(source, context);
  return source;
}


ClientCertificateCredential::ClientCertificateCredential(
    const std::string& authorityHost, const std::string& tenantId, const std::string& clientId,
    const std::string& scope, std::function<CertificateSource()> getCertificate,
    const TlsSettings& tls, ILogger* logger)
    : tokenUrl_(GetEntraTokenUrl(authorityHost, tenantId)),
      clientId_(clientId),
      scope_(scope),
      getCertificate_(std::move(getCertificate)),
      tls_(tls),
      logger_(logger)
{
  RequireCredentialSetting(GetType(), authorityHost, "AuthorityHost", "the Entra ID authority URL");
  RequireCredentialSetting(GetType(), tenantId, "TenantId", "the directory (tenant) ID");
  RequireCredentialSetting(GetType(), clientId, "ClientId", "the application (client) ID");
  RequireCredentialSetting(GetType(), scope, "Scope",
                           "the scope of the token, such as {resource}/.default");

  if (!getCertificate_)
  {
    throw Exception(ErrorCode::InternalError,
                    "ClientCertificate credential: getCertificate is empty; expected a function "
                    "that returns the certificate");
  }
}


AccessToken ClientCertificateCredential::RequestToken()
{
  const ErrorContext context = MakeCredentialContext(clientId_);
  const LoadedCertificate certificate = LoadCertificate(getCertificate_(), context);
  const int64_t nowSeconds = NowMs() / MS_PER_SECOND;

  const std::string thumbprint = GetThumbprintOf(certificate.certificate.get());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    thumbprint_ = thumbprint;
  }

  const std::string validityProblem =
      DescribeValidityProblem(certificate.certificate.get(), nowSeconds);
  if (!validityProblem.empty())
  {
    WarnAboutValidity(thumbprint, validityProblem + "; expected a valid certificate");
  }
  else if (ExpiresBefore(certificate.certificate.get(), nowSeconds + EXPIRY_WARNING_SECONDS))
  {
    WarnAboutValidity(thumbprint,
                      "expires on " +
                          FormatAsn1Time(X509_get0_notAfter(certificate.certificate.get())) +
                          "; renew it and register the new one for the application");
  }

  const std::string assertion = SignAssertion(certificate, clientId_, tokenUrl_, nowSeconds);
  const std::string body = "grant_type=client_credentials&client_id=" + UrlEncode(clientId_) +
                           "&scope=" + UrlEncode(scope_) +
                           "&client_assertion_type=" + UrlEncode(CLIENT_ASSERTION_TYPE) +
                           "&client_assertion=" + UrlEncode(assertion);

  try
  {
    return PostTokenRequest(tokenUrl_, body, {assertion}, GetType(), tls_);
  }
  catch (const Exception& e)
  {
    if (e.GetCode() != ErrorCode::Unauthorized || validityProblem.empty())
    {
      throw;
    }

    // Adds the certificate's dates, which Entra ID's message may not mention.
    throw Exception(e.GetCode(), std::string(e.what()) + " (the certificate with thumbprint " +
                                     thumbprint + " " + validityProblem + ")");
  }
}


void ClientCertificateCredential::WarnAboutValidity(const std::string& thumbprint,
                                                    const std::string& problem)
{
  if (logger_ == nullptr)
  {
    return;
  }

  const std::string message = std::string(CREDENTIAL_TYPE) +
                              " credential: the certificate with thumbprint " + thumbprint +
                              " of client ID " + clientId_ + " " + problem;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (lastWarning_ == message)
    {
      return;
    }

    lastWarning_ = message;
  }

  logger_->Warning(message);
}


std::string ClientCertificateCredential::GetThumbprint() const
{
  std::lock_guard<std::mutex> lock(mutex_);
  return thumbprint_;
}


std::string CreateClientAssertion(const CertificateSource& certificate, const std::string& clientId,
                                  const std::string& audience, int64_t nowSeconds)
{
  const LoadedCertificate loaded = LoadCertificate(certificate, MakeCredentialContext(clientId));
  return SignAssertion(loaded, clientId, audience, nowSeconds);
}
}  // namespace AzureDicom
